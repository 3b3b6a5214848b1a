// The unary iquest-cli subcommands: tokenize, detokenize, info, load, health and abort.
#include <google/protobuf/util/json_util.h>

#include <limits>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "iquest/serve/v1/generation.grpc.pb.h"
#include "tools/cli/commands.h"

namespace iquest {
namespace {

namespace v1 = iquest::serve::v1;
namespace health = grpc::health::v1;

// Info and load are printed as JSON with every field, so scripts can read them and a zero is
// visible rather than left out.
void PrintJson(const google::protobuf::Message& message, std::ostream& out) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    json = message.DebugString();
  }
  out << json;
  if (json.empty() || json.back() != '\n') out << "\n";
}

// Runs one unary call with a prepared context, reporting errors the same way for every command.
template <typename Request, typename Response, typename Call>
int CallUnary(const Connection& connection, Call call, const Request& request, Response* response,
              std::ostream& err) {
  grpc::ClientContext context;
  connection.Prepare(context);
  const grpc::Status status = call(&context, request, response);
  return status.ok() ? 0 : ReportRpcError(context, status, err);
}

}  // namespace

int RunTokenize(const Connection& connection, const std::string& text, std::ostream& out,
                std::ostream& err) {
  auto stub = v1::Generation::NewStub(connection.channel());
  v1::TokenizeRequest request;
  request.set_text(text);
  v1::TokenizeResponse response;
  auto call = [&](auto* c, const auto& q, auto* r) { return stub->Tokenize(c, q, r); };
  if (int rc = CallUnary(connection, call, request, &response, err); rc != 0) return rc;
  // Comma-separated, so the output can be passed straight to --prompt-ids.
  out << absl::StrJoin(response.token_ids(), ",") << "\n";
  return 0;
}

int RunDetokenize(const Connection& connection, const std::string& ids, std::ostream& out,
                  std::ostream& err) {
  std::vector<int32_t> parsed;
  const absl::Status status = ParseIntList(ids, 0, std::numeric_limits<int32_t>::max(), &parsed);
  if (!status.ok()) {
    err << "error: --ids: " << status.message() << "\n";
    return 2;
  }
  auto stub = v1::Generation::NewStub(connection.channel());
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(parsed.begin(), parsed.end());
  v1::DetokenizeResponse response;
  auto call = [&](auto* c, const auto& q, auto* r) { return stub->Detokenize(c, q, r); };
  if (int rc = CallUnary(connection, call, request, &response, err); rc != 0) return rc;
  out << response.text() << "\n";
  return 0;
}

int RunInfo(const Connection& connection, std::ostream& out, std::ostream& err) {
  auto stub = v1::Generation::NewStub(connection.channel());
  v1::GetModelInfoResponse response;
  auto call = [&](auto* c, const auto& q, auto* r) { return stub->GetModelInfo(c, q, r); };
  if (int rc = CallUnary(connection, call, v1::GetModelInfoRequest(), &response, err); rc != 0) {
    return rc;
  }
  PrintJson(response, out);
  return 0;
}

int RunLoad(const Connection& connection, std::ostream& out, std::ostream& err) {
  auto stub = v1::Generation::NewStub(connection.channel());
  v1::GetServerLoadResponse response;
  auto call = [&](auto* c, const auto& q, auto* r) { return stub->GetServerLoad(c, q, r); };
  if (int rc = CallUnary(connection, call, v1::GetServerLoadRequest(), &response, err); rc != 0) {
    return rc;
  }
  PrintJson(response, out);
  return 0;
}

int RunHealth(const Connection& connection, const std::string& service, std::ostream& out,
              std::ostream& err) {
  auto stub = health::Health::NewStub(connection.channel());
  health::HealthCheckRequest request;
  request.set_service(service);
  health::HealthCheckResponse response;
  auto call = [&](auto* c, const auto& q, auto* r) { return stub->Check(c, q, r); };
  if (int rc = CallUnary(connection, call, request, &response, err); rc != 0) return rc;
  out << health::HealthCheckResponse::ServingStatus_Name(response.status()) << "\n";
  // Exit status 3 lets scripts and probes tell "reachable but not serving" from an RPC error.
  return response.status() == health::HealthCheckResponse::SERVING ? 0 : 3;
}

int RunAbort(const Connection& connection, const std::string& ids, const std::string& tenant,
             std::ostream& out, std::ostream& err) {
  v1::AbortRequest request;
  request.set_tenant(tenant);
  for (absl::string_view id : absl::StrSplit(ids, ',', absl::SkipEmpty())) {
    request.add_request_ids(std::string(id));
  }
  if (request.request_ids().empty()) {
    err << "error: abort needs --ids ID[,ID...]\n";
    return 2;
  }
  auto stub = v1::Generation::NewStub(connection.channel());
  v1::AbortResponse response;
  auto call = [&](auto* c, const auto& q, auto* r) { return stub->Abort(c, q, r); };
  if (int rc = CallUnary(connection, call, request, &response, err); rc != 0) return rc;
  out << "num_requested=" << response.num_requested()
      << " num_cancelled=" << response.num_cancelled() << "\n";
  return 0;
}

}  // namespace iquest
