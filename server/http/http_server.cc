#include "server/http/http_server.h"

#include <atomic>
#include <deque>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/ssl.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"
#include "common/check.h"
#include "common/log.h"

namespace iquest {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
namespace ssl = net::ssl;
using error_code = beast::error_code;

std::string ErrorBody(const std::string& message, const std::string& type) {
  // The OpenAI error shape; the message is ours, never client bytes, so it needs no escaping
  // beyond quotes (none of ours contain any).
  return absl::StrCat("{\"error\":{\"message\":\"", message, "\",\"type\":\"", type,
                      "\",\"param\":null,\"code\":null}}");
}

std::string Head(int status, const std::string& content_type, const HttpHeaders& headers,
                 bool keep_alive, std::optional<size_t> content_length) {
  const auto reason = http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
  std::string head =
      absl::StrCat("HTTP/1.1 ", status, " ", absl::string_view(reason.data(), reason.size()),
                   "\r\nServer: iquest-serve\r\nContent-Type: ", content_type,
                   "\r\nConnection: ", keep_alive ? "keep-alive" : "close", "\r\n");
  if (content_length) {
    absl::StrAppend(&head, "Content-Length: ", *content_length, "\r\n");
  } else {
    absl::StrAppend(&head, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n",
                    "X-Accel-Buffering: no\r\n");
  }
  for (const auto& [name, value] : headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  head += "\r\n";
  return head;
}

std::string Chunk(const std::string& data) {
  return absl::StrCat(absl::Hex(data.size()), "\r\n", data, "\r\n");
}

class Session;

// The handler's handle on one request/response: posts everything to the session's strand, and
// is inert once the response ended or the session is gone.
class Exchange : public HttpExchange {
 public:
  Exchange(std::weak_ptr<Session> session, uint64_t serial, net::any_io_executor executor)
      : session_(std::move(session)), serial_(serial), executor_(std::move(executor)) {}

  void Respond(int status, const std::string& content_type, std::string body,
               HttpHeaders headers) override;
  void StartStream(int status, const std::string& content_type, HttpHeaders headers) override;
  void Send(std::string data) override;
  void EndStream() override;
  void Post(std::function<void()> task) override { net::post(executor_, std::move(task)); }
  void OnClientGone(std::function<void()> callback) override;

 private:
  void Write(std::string bytes, bool last);

  std::weak_ptr<Session> session_;
  uint64_t serial_;
  net::any_io_executor executor_;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `tls` null: plaintext.
  Session(tcp::socket socket, ssl::context* tls, const HttpServerOptions& options,
          const HttpHandler& handler, std::atomic<int64_t>& num_connections)
      : executor_(socket.get_executor()),
        socket_(executor_),
        read_timer_(executor_),
        write_timer_(executor_),
        options_(options),
        handler_(handler),
        num_connections_(num_connections) {
    if (tls != nullptr) {
      tls_ = std::make_unique<ssl::stream<tcp::socket>>(std::move(socket), *tls);
    } else {
      socket_ = std::move(socket);
    }
  }
  ~Session() { num_connections_.fetch_sub(1); }

  void Start() {
    net::dispatch(executor_, [self = shared_from_this()] {
      if (!self->tls_) return self->ReadRequest();
      // The handshake counts against the idle timeout, as a slow request would.
      self->Arm(self->read_timer_, self->options_.idle_timeout_s);
      self->tls_->async_handshake(ssl::stream_base::server, [self](error_code ec) {
        self->read_timer_.cancel();
        if (ec) return self->Close();
        self->ReadRequest();
      });
    });
  }

  // Strand only, from Exchange.
  void Write(uint64_t serial, std::string bytes, bool last) {
    if (serial != serial_ || response_queued_ || closed_) return;
    writes_.push_back(std::move(bytes));
    if (last) response_queued_ = true;
    if (!writing_) WriteNext();
  }
  void SetClientGone(uint64_t serial, std::function<void()> callback) {
    if (serial != serial_ || response_done_) return;
    if (client_gone_) {
      callback();
    } else {
      on_client_gone_ = std::move(callback);
    }
  }
  bool streaming(uint64_t serial) const { return serial == serial_ && streaming_; }
  void set_streaming(uint64_t serial) {
    if (serial == serial_) streaming_ = true;
  }
  bool keep_alive() const { return keep_alive_; }
  net::any_io_executor executor() const { return executor_; }
  void Close() {
    if (closed_) return;
    closed_ = true;
    read_timer_.cancel();
    write_timer_.cancel();
    error_code ignored;
    lowest().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().close(ignored);
  }

 private:
  tcp::socket& lowest() { return tls_ ? tls_->next_layer() : socket_; }
  // Runs `f` with the stream requests are read from and responses written to.
  template <typename F>
  void WithStream(F&& f) {
    if (tls_) {
      f(*tls_);
    } else {
      f(socket_);
    }
  }
  // A deadline for the operations in flight: when it passes, the connection closes (and they
  // fail). Cancelled when they complete.
  void Arm(net::steady_timer& timer, int64_t seconds) {
    timer.expires_after(std::chrono::seconds(seconds));
    timer.async_wait([weak = weak_from_this()](error_code ec) {
      if (ec) return;  // Cancelled: the operation finished in time.
      if (std::shared_ptr<Session> self = weak.lock()) self->Close();
    });
  }

  void ReadRequest() {
    if (closed_) return;
    parser_.emplace();
    parser_->body_limit(static_cast<uint64_t>(options_.max_body_bytes));
    parser_->header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    Arm(read_timer_, options_.idle_timeout_s);
    WithStream([&](auto& stream) {
      http::async_read(stream, buffer_, *parser_,
                       [self = shared_from_this()](error_code ec, size_t) { self->OnRead(ec); });
    });
  }

  void OnRead(error_code ec) {
    read_timer_.cancel();
    if (ec && (ec.category() != http::make_error_code(http::error::bad_version).category() ||
               ec == http::error::end_of_stream || ec == http::error::partial_message)) {
      return Close();  // The peer closed, reset, or timed out (the timer closed the socket).
    }
    if (ec) {
      // Malformed or over a limit: answer, then close (the stream cannot be resynchronised).
      int status = 400;
      std::string message = "malformed HTTP request";
      if (ec == http::error::body_limit) {
        status = 413;
        message = absl::StrCat("request body exceeds ", options_.max_body_bytes, " bytes");
      } else if (ec == http::error::header_limit) {
        status = 431;
        message = absl::StrCat("request headers exceed ", options_.max_header_bytes, " bytes");
      }
      keep_alive_ = false;
      BeginExchange();
      Write(serial_, Respond(status, ErrorBody(message, "invalid_request_error")), true);
      return;
    }
    http::request<http::string_body> message = parser_->release();
    keep_alive_ = message.keep_alive();
    HttpRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    for (const auto& field : message) {
      request.headers[absl::AsciiStrToLower(absl::string_view(
          field.name_string().data(), field.name_string().size()))] = std::string(field.value());
    }
    request.body = std::move(message.body());
    std::shared_ptr<HttpExchange> exchange = BeginExchange();
    Watch();
    handler_(std::move(request), std::move(exchange));
  }

  std::string Respond(int status, std::string body) {
    std::string bytes = Head(status, "application/json", {}, keep_alive_, body.size());
    return bytes + body;
  }

  std::shared_ptr<HttpExchange> BeginExchange() {
    ++serial_;
    response_queued_ = false;
    response_done_ = false;
    streaming_ = false;
    client_gone_ = false;
    on_client_gone_ = nullptr;
    return std::make_shared<Exchange>(weak_from_this(), serial_, executor_);
  }

  // A read while the response is pending (no deadline: generation may take long): EOF or an
  // error means the client has gone; bytes are kept for the next request.
  void Watch() {
    if (watching_ || closed_) return;
    if (buffer_.size() >= static_cast<size_t>(options_.max_header_bytes + options_.max_body_bytes))
      return;  // Pipelined too far ahead: stop reading until this response is done.
    watching_ = true;
    WithStream([&](auto& stream) {
      stream.async_read_some(buffer_.prepare(4096),
                             [self = shared_from_this()](error_code ec, size_t n) {
                               self->watching_ = false;
                               if (!ec) {
                                 self->buffer_.commit(n);
                                 if (self->response_done_) return self->ReadRequest();
                                 return self->Watch();
                               }
                               if (ec == net::error::operation_aborted) {
                                 if (self->response_done_ && !self->closed_) self->ReadRequest();
                                 return;
                               }
                               self->ClientGone();
                             });
    });
  }

  void ClientGone() {
    if (!response_done_ && !client_gone_) {
      client_gone_ = true;
      if (on_client_gone_) {
        std::function<void()> callback = std::move(on_client_gone_);
        on_client_gone_ = nullptr;
        callback();
      }
    }
    if (!writing_) Close();  // Else the failing write closes it.
  }

  void WriteNext() {
    if (writes_.empty()) {
      if (response_queued_ && !response_done_) ResponseDone();
      return;
    }
    writing_ = true;
    current_ = std::move(writes_.front());
    writes_.pop_front();
    Arm(write_timer_, options_.write_timeout_s);
    WithStream([&](auto& stream) {
      net::async_write(stream, net::buffer(current_),
                       [self = shared_from_this()](error_code ec, size_t) {
                         self->writing_ = false;
                         self->write_timer_.cancel();
                         if (ec) {
                           self->ClientGone();
                           return self->Close();
                         }
                         self->WriteNext();
                       });
    });
  }

  void ResponseDone() {
    response_done_ = true;
    on_client_gone_ = nullptr;
    if (!keep_alive_ || client_gone_) return Close();
    if (watching_) {
      error_code ignored;
      lowest().cancel(ignored);  // The watch's handler then reads the next request.
    } else {
      ReadRequest();
    }
  }

  net::any_io_executor executor_;  // The connection's strand.
  tcp::socket socket_;             // Plaintext; unused with TLS.
  std::unique_ptr<ssl::stream<tcp::socket>> tls_;
  net::steady_timer read_timer_;
  net::steady_timer write_timer_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
  std::atomic<int64_t>& num_connections_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  uint64_t serial_ = 0;  // Of the current exchange.
  bool keep_alive_ = true;
  bool watching_ = false;
  bool writing_ = false;
  bool response_queued_ = false;  // The last bytes of the response are in writes_.
  bool response_done_ = true;     // ...and written.
  bool streaming_ = false;
  bool client_gone_ = false;
  bool closed_ = false;
  std::function<void()> on_client_gone_;
  std::deque<std::string> writes_;
  std::string current_;  // The write in flight.
};

void Exchange::Write(std::string bytes, bool last) {
  net::post(executor_,
            [session = session_, serial = serial_, bytes = std::move(bytes), last]() mutable {
              if (std::shared_ptr<Session> s = session.lock())
                s->Write(serial, std::move(bytes), last);
            });
}

void Exchange::Respond(int status, const std::string& content_type, std::string body,
                       HttpHeaders headers) {
  net::post(executor_, [session = session_, serial = serial_, status, content_type,
                        body = std::move(body), headers = std::move(headers)]() mutable {
    std::shared_ptr<Session> s = session.lock();
    if (s == nullptr || s->streaming(serial)) return;
    std::string bytes = Head(status, content_type, headers, s->keep_alive(), body.size());
    s->Write(serial, bytes + body, /*last=*/true);
  });
}

void Exchange::StartStream(int status, const std::string& content_type, HttpHeaders headers) {
  net::post(executor_, [session = session_, serial = serial_, status, content_type,
                        headers = std::move(headers)]() mutable {
    std::shared_ptr<Session> s = session.lock();
    if (s == nullptr || s->streaming(serial)) return;
    s->set_streaming(serial);
    s->Write(serial, Head(status, content_type, headers, s->keep_alive(), std::nullopt), false);
  });
}

void Exchange::Send(std::string data) {
  if (data.empty()) return;  // An empty chunk would end the stream.
  Write(Chunk(data), false);
}

void Exchange::EndStream() { Write("0\r\n\r\n", true); }

void Exchange::OnClientGone(std::function<void()> callback) {
  net::post(executor_,
            [session = session_, serial = serial_, callback = std::move(callback)]() mutable {
              if (std::shared_ptr<Session> s = session.lock())
                s->SetClientGone(serial, std::move(callback));
            });
}

}  // namespace

struct HttpServer::Impl {
  Impl(const HttpServerOptions& o, HttpHandler h)
      : options(o), handler(std::move(h)), io(o.num_threads), acceptor(net::make_strand(io)) {}

  void Accept() {
    acceptor.async_accept(net::make_strand(io), [this](error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        if (num_connections.fetch_add(1) >= options.max_connections) {
          num_connections.fetch_sub(1);
          error_code ignored;
          socket.close(ignored);  // Over the limit: refused at once.
        } else {
          // Streams are many small writes (an SSE event per token): without this, Nagle holds
          // each behind the client's delayed ACK, ~40 ms.
          error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          std::make_shared<Session>(std::move(socket), tls.get(), options, handler, num_connections)
              ->Start();
        }
      }
      Accept();
    });
  }

  // Sessions (owned by handlers in `io`) refer to the three fields above `io`: they go last.
  HttpServerOptions options;
  HttpHandler handler;
  std::atomic<int64_t> num_connections{0};
  std::unique_ptr<ssl::context> tls;  // Null: plaintext.
  net::io_context io;
  tcp::acceptor acceptor;
  std::vector<std::thread> threads;
  int port = 0;
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              HttpHandler handler) {
  CHECK_GE(options.num_threads, 1);
  auto impl = std::make_unique<Impl>(options, std::move(handler));
  error_code ec;
  if (!options.tls_cert_pem.empty()) {
    impl->tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    impl->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                               ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                               ssl::context::no_tlsv1_1,
                           ec);
    if (!ec) {
      impl->tls->use_certificate_chain(
          net::buffer(options.tls_cert_pem.data(), options.tls_cert_pem.size()), ec);
    }
    if (!ec) {
      impl->tls->use_private_key(
          net::buffer(options.tls_key_pem.data(), options.tls_key_pem.size()), ssl::context::pem,
          ec);
    }
    if (!ec && !options.tls_client_ca_pem.empty()) {
      impl->tls->add_certificate_authority(
          net::buffer(options.tls_client_ca_pem.data(), options.tls_client_ca_pem.size()), ec);
      if (!ec) {
        impl->tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
      }
    }
    if (ec) return absl::InvalidArgumentError(absl::StrCat("HTTP TLS: ", ec.message()));
  }
  const net::ip::address address = net::ip::make_address(options.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--host: not an address: ", options.host));
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(options.port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("HTTP: cannot listen on ", options.host, ":",
                                               options.port, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  for (int i = 0; i < options.num_threads; ++i) {
    impl->threads.emplace_back([io = &impl->io] { io->run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

int HttpServer::port() const { return impl_->port; }

int64_t HttpServer::num_connections() const { return impl_->num_connections.load(); }

void HttpServer::Stop() {
  if (impl_->threads.empty()) return;
  net::post(impl_->acceptor.get_executor(), [impl = impl_.get()] {
    error_code ignored;
    impl->acceptor.close(ignored);
  });
  impl_->io.stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
}

}  // namespace iquest
