// Subcommand dispatch and flag parsing for iquest-cli.
#include "tools/cli/cli.h"

#include <cstring>

#include "common/flags.h"
#include "tools/cli/client_channel.h"
#include "tools/cli/commands.h"
#include "tools/cli/request_builder.h"

namespace iquest {
namespace {

constexpr const char* kUsage =
    "Usage: iquest-cli COMMAND [flags]   (iquest-cli COMMAND --help lists a command's flags)\n"
    "Commands:\n"
    "  generate    stream a completion of --prompt TEXT or --prompt-ids 1,2,3\n"
    "  chat        stream a chat answer to --message ROLE:TEXT (repeatable) [--system TEXT]\n"
    "  tokenize    --text TEXT -> token ids\n"
    "  detokenize  --ids 1,2,3 -> text\n"
    "  info        the served model (GetModelInfo)\n"
    "  load        the server's load (GetServerLoad)\n"
    "  health      grpc.health.v1 Check [--service NAME]\n"
    "  abort       cancel your live requests --ids ID[,ID...] [--tenant T]\n";

struct CliOptions {
  ConnectionOptions connection;
  GenerateOptions generate;
  bool print_ids = false;
  std::string text;
  std::string ids;
  std::string service;
  std::string tenant;  // abort: the scope of the ids without auth.
};

// Registers the flags of `command`; false when there is no such command.
bool AddCommandFlags(const std::string& command, FlagParser& parser, CliOptions& options) {
  AddConnectionFlags(parser, &options.connection);
  if (command == "generate" || command == "chat") {
    if (command == "generate") {
      parser.AddString("prompt", &options.generate.prompt, "prompt text");
      parser.AddString("prompt-ids", &options.generate.prompt_ids, "prompt token ids 1,2,3");
    } else {
      parser.AddString("message", &options.generate.help_only,
                       "ROLE:TEXT with ROLE system, user or assistant; repeat in order");
      parser.AddString("system", &options.generate.system, "system prompt, sent first");
    }
    AddSamplingFlags(parser, &options.generate);
    parser.AddBool("print-ids", &options.print_ids, "print token ids instead of text");
  } else if (command == "tokenize") {
    parser.AddString("text", &options.text, "text to tokenize");
  } else if (command == "detokenize" || command == "abort") {
    parser.AddString("ids", &options.ids,
                     command == "abort" ? "request ids ID[,ID...]" : "token ids 1,2,3");
    if (command == "abort") {
      parser.AddString("tenant", &options.tenant,
                       "without auth, the tenant the requests were sent under");
    }
  } else if (command == "health") {
    parser.AddString("service", &options.service, "service name; \"\": the whole server");
  } else if (command != "info" && command != "load") {
    return false;
  }
  return true;
}

int Dispatch(const std::string& command, const Connection& connection, CliOptions& options,
             std::ostream& out, std::ostream& err) {
  if (command == "generate" || command == "chat") {
    auto request = command == "generate" ? BuildGenerateRequest(options.generate)
                                         : BuildChatRequest(options.generate);
    if (!request.ok()) {
      err << "error: " << request.status().message() << "\n";
      return 2;
    }
    return RunGenerate(connection, *request, options.print_ids, out, err);
  }
  if (command == "tokenize") return RunTokenize(connection, options.text, out, err);
  if (command == "detokenize") return RunDetokenize(connection, options.ids, out, err);
  if (command == "info") return RunInfo(connection, out, err);
  if (command == "load") return RunLoad(connection, out, err);
  if (command == "health") return RunHealth(connection, options.service, out, err);
  return RunAbort(connection, options.ids, options.tenant, out, err);
}

}  // namespace

int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? 2 : 0;
  }
  const std::string& command = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  CliOptions options;
  options.generate.stop = TakeRepeatedFlag("stop", rest);
  if (command == "chat") options.generate.messages = TakeRepeatedFlag("message", rest);

  FlagParser parser("iquest-cli " + command, "See `iquest-cli --help` for the commands.");
  if (!AddCommandFlags(command, parser, options)) {
    err << "error: unknown command '" << command << "'\n" << kUsage;
    return 2;
  }
  std::vector<char*> argv = {const_cast<char*>("iquest-cli")};
  for (std::string& arg : rest) argv.push_back(arg.data());
  const absl::Status parsed = parser.Parse(static_cast<int>(argv.size()), argv.data());
  if (parser.help_requested()) {
    out << parser.Help();
    return 0;
  }
  if (!parsed.ok()) {
    err << "error: " << parsed.message() << "\n";
    return 2;
  }
  auto connection = Connection::Open(options.connection);
  if (!connection.ok()) {
    err << "error: " << connection.status().message() << "\n";
    return 2;
  }
  return Dispatch(command, *connection, options, out, err);
}

}  // namespace iquest
