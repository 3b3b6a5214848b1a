// HttpServer: the HTTP/1.1 front door, Boost.Beast on Asio. A few I/O threads serve every
// connection asynchronously, so a thousand streaming clients need no more threads than ten.
//
// TLS (and mutual TLS) when HttpServerOptions carries a certificate. A connection reads one
// request at a time (keep-alive; pipelined bytes wait in its buffer),
// within a header-size and a body-size limit (431 / 413) and an idle timeout that also bounds a
// slow sender (slowloris). Each write must finish within the write timeout or the connection is
// dropped (a slow reader cannot pin memory). While a response is pending, a read on the socket
// watches for the client leaving, so a disconnect reaches the handler at once
// (HttpExchange::OnClientGone) even while nothing is being written.
//
// Threads: the handler and every callback run on the connection's strand (an I/O thread);
// HttpExchange's methods may be called from any thread and post to that strand.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace iquest {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0 picks a free one.
  int num_threads = 2;
  int64_t max_body_bytes = 8 << 20;
  int64_t max_header_bytes = 16 << 10;
  int64_t idle_timeout_s = 60;   // Between requests, and to read one whole request.
  int64_t write_timeout_s = 30;  // One write.
  int64_t max_connections = 4096;
  // TLS when a certificate is given (PEM text, not paths); a client CA makes it mutual TLS.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  std::string tls_client_ca_pem;
};

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // Path and query, as sent.
  std::map<std::string, std::string> headers;  // Names lower-cased; a repeated name: the last.
  std::string body;

  std::string path() const { return target.substr(0, target.find('?')); }
  const std::string* header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
  }
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// The response side of one request. Either Respond once, or StartStream, Send*, EndStream.
// Calls after the response ended, or after the connection closed, do nothing.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual void Respond(int status, const std::string& content_type, std::string body,
                       HttpHeaders headers = {}) = 0;
  // A chunked response (e.g. text/event-stream); each Send is written as it comes.
  virtual void StartStream(int status, const std::string& content_type,
                           HttpHeaders headers = {}) = 0;
  virtual void Send(std::string data) = 0;
  virtual void EndStream() = 0;
  // Runs `task` on this exchange's strand (e.g. to format engine outputs off the engine thread).
  virtual void Post(std::function<void()> task) = 0;
  // `callback` runs once, on the strand, if the client leaves before the response ended (at once
  // if it already has).
  virtual void OnClientGone(std::function<void()> callback) = 0;
};

using HttpHandler = std::function<void(HttpRequest, std::shared_ptr<HttpExchange>)>;

class HttpServer {
 public:
  // Binds, listens and starts the I/O threads. `handler` is called on I/O threads.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           HttpHandler handler);
  ~HttpServer();  // Stop().

  int port() const;
  int64_t num_connections() const;
  // Stops accepting and closes every connection; joins the I/O threads.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace iquest
