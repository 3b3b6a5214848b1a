// iquest-cli: a command-line client for the iquest.serve.v1 Generation API.
#include <iostream>
#include <string>
#include <vector>

#include "tools/cli/cli.h"

int main(int argc, char** argv) {
  // Generated text goes out as it arrives; unsynced streams keep that cheap per chunk.
  std::ios::sync_with_stdio(false);
  const std::vector<std::string> args(argv + 1, argv + argc);
  return iquest::RunCli(args, std::cout, std::cerr);
}
