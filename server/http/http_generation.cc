#include "server/http/http_generation.h"

namespace iquest {
namespace {

using json = nlohmann::json;

}  // namespace

// Client text may hold invalid UTF-8 only inside single token strings (a byte-fallback piece):
// replaced, never thrown on.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return 400;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return 401;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

namespace {

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 400:
    case 404:
    case 413:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    default:
      return "server_error";
  }
}

}  // namespace

json ErrorJson(int http_status, absl::string_view message, const std::string& param,
               const char* code) {
  json error = {{"message", std::string(message)},
                {"type", ErrorType(http_status)},
                {"param", param.empty() ? json(nullptr) : json(param)},
                {"code", code == nullptr ? json(nullptr) : json(code)}};
  return {{"error", error}};
}

void RespondJson(HttpExchange& exchange, int status, const json& body, HttpHeaders headers) {
  exchange.Respond(status, "application/json", Dump(body), std::move(headers));
}

void RespondError(HttpExchange& exchange, const absl::Status& status, HttpHeaders headers) {
  const int http = HttpStatusOf(status.code());
  RespondJson(exchange, http, ErrorJson(http, status.message(), ErrorParam(status)),
              std::move(headers));
}

const char* FinishReasonText(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
      return nullptr;
    default:
      return "stop";
  }
}

// Why a finished request is an error rather than a completion, or OK.
absl::Status FinishStatus(FinishReason reason) {
  switch (reason) {
    case FinishReason::kCancelled:
      return absl::UnavailableError("request cancelled (the server is shutting down)");
    case FinishReason::kDeadlineExceeded:
      return absl::DeadlineExceededError("request timed out");
    case FinishReason::kInternalError:
      return absl::InternalError("the engine step failed");
    default:
      return absl::OkStatus();
  }
}

}  // namespace iquest
