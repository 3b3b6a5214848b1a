// iquest-cli as a library: parses a command line and runs one subcommand, so tests can drive
// the whole tool in-process and inspect what it prints.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace iquest {

// `args` is argv without the program name: the subcommand first, then its flags. Results go to
// `out`, diagnostics to `err`. Returns the exit code: 0 ok, 1 RPC error, 2 usage error,
// 3 health check answered but not SERVING.
int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace iquest
