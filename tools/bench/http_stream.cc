#include "tools/bench/http_stream.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "nlohmann/json.hpp"

namespace iquest {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

struct HttpStreamClient::Conn {
  net::io_context io;
  tcp::socket socket{io};
  beast::flat_buffer buffer;
};

HttpStreamClient::HttpStreamClient(std::string target, std::string bearer_token)
    : bearer_token_(std::move(bearer_token)) {
  const size_t colon = target.rfind(':');
  host_ = target.substr(0, colon);
  port_ = colon == std::string::npos ? "8000" : target.substr(colon + 1);
}

HttpStreamClient::~HttpStreamClient() = default;

std::unique_ptr<HttpStreamClient::Conn> HttpStreamClient::Take() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!idle_.empty()) {
      std::unique_ptr<Conn> conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
  }
  auto conn = std::make_unique<Conn>();
  beast::error_code ec;
  tcp::resolver resolver(conn->io);
  const auto endpoints = resolver.resolve(host_, port_, ec);
  if (!ec) net::connect(conn->socket, endpoints, ec);
  if (ec) return nullptr;
  conn->socket.set_option(tcp::no_delay(true), ec);
  return conn;
}

void HttpStreamClient::Give(std::unique_ptr<Conn> conn) {
  std::lock_guard<std::mutex> lock(mutex_);
  idle_.push_back(std::move(conn));
}

void HttpStreamClient::Run(const serve::v1::GenerateRequest& request, bool cancel_after_first_token,
                           RequestRecord& record) {
  const Clock::time_point start = Clock::now();
  const auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };
  nlohmann::json body = {{"max_tokens", request.sampling().max_tokens()},
                         {"ignore_eos", request.sampling().ignore_eos()},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (request.has_token_ids()) {
    body["prompt"] =
        std::vector<int32_t>(request.token_ids().ids().begin(), request.token_ids().ids().end());
  } else {
    body["prompt"] = request.text();
  }
  std::unique_ptr<Conn> conn = Take();
  if (conn == nullptr) {
    record.error_code = "UNAVAILABLE";
    record.e2e_s = seconds();
    return;
  }
  http::request<http::string_body> message{http::verb::post, "/v1/completions", 11};
  message.set(http::field::host, host_);
  message.set(http::field::content_type, "application/json");
  if (!bearer_token_.empty()) message.set(http::field::authorization, "Bearer " + bearer_token_);
  message.body() = body.dump();
  message.prepare_payload();
  beast::error_code ec;
  http::write(conn->socket, message, ec);
  http::response_parser<http::empty_body> parser;
  parser.body_limit(boost::none);
  std::string pending;  // SSE bytes not yet split into events.
  double last_event_s = 0;
  bool stop = false;
  auto on_chunk = [&](uint64_t, beast::string_view data, beast::error_code&) -> size_t {
    pending.append(data.data(), data.size());
    for (size_t end; !stop && (end = pending.find("\n\n")) != std::string::npos;) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0 || event == "data: [DONE]") continue;
      const nlohmann::json chunk = nlohmann::json::parse(event.substr(6), nullptr, false);
      if (chunk.is_discarded()) continue;
      if (chunk.contains("error")) {
        record.error_code = "INTERNAL";
        continue;
      }
      if (chunk.contains("usage") && chunk["usage"].is_object()) {
        record.prompt_tokens = chunk["usage"].value("prompt_tokens", 0);
        record.output_tokens = chunk["usage"].value("completion_tokens", 0);
      }
      if (!chunk.contains("choices") || chunk["choices"].empty()) continue;
      const double now = seconds();
      if (record.ttft_s < 0) {
        record.ttft_s = now;
      } else {
        record.itl_s.push_back(now - last_event_s);
      }
      last_event_s = now;
      if (cancel_after_first_token) {
        record.cancelled = true;
        stop = true;
      }
    }
    return data.size();
  };
  parser.on_chunk_body(on_chunk);
  if (!ec) http::read_header(conn->socket, conn->buffer, parser, ec);
  if (!ec && parser.get().result_int() != 200) {
    record.error_code = absl::StrCat("HTTP_", parser.get().result_int());
  }
  while (!ec && !stop && !parser.is_done()) http::read_some(conn->socket, conn->buffer, parser, ec);
  record.e2e_s = seconds();
  if (ec && !record.cancelled) record.error_code = "UNAVAILABLE";
  if (!ec && !stop && parser.is_done() && parser.keep_alive()) Give(std::move(conn));
}

}  // namespace iquest
