// The iquest-cli subcommands. Each takes an open Connection, writes its result to `out` and
// diagnostics to `err`, and returns the process exit code (0 ok, 1 RPC error, 3 not serving).
#pragma once

#include <ostream>
#include <string>

#include "iquest/serve/v1/generation.pb.h"
#include "tools/cli/client_channel.h"

namespace iquest {

// Streams one Generate call: text deltas to `out` as they arrive (flushed per response), or the
// token ids when `print_ids` is set or the server sends no text; finish reasons, usage and
// timings to `err`. With n > 1 each sample is printed whole, in index order, once it ends.
int RunGenerate(const Connection& connection, const iquest::serve::v1::GenerateRequest& request,
                bool print_ids, std::ostream& out, std::ostream& err);

int RunTokenize(const Connection& connection, const std::string& text, std::ostream& out,
                std::ostream& err);
int RunDetokenize(const Connection& connection, const std::string& ids, std::ostream& out,
                  std::ostream& err);
int RunInfo(const Connection& connection, std::ostream& out, std::ostream& err);
int RunLoad(const Connection& connection, std::ostream& out, std::ostream& err);
int RunHealth(const Connection& connection, const std::string& service, std::ostream& out,
              std::ostream& err);
int RunAbort(const Connection& connection, const std::string& ids, const std::string& tenant,
             std::ostream& out, std::ostream& err);

// Prints "error: CODE: message" (plus the server's retry hint, if any) and returns 1.
int ReportRpcError(const grpc::ClientContext& context, const grpc::Status& status,
                   std::ostream& err);

}  // namespace iquest
