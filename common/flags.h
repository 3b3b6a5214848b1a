// A small command-line flag parser for our binaries: `--name value`, `--name=value` and bare
// `--flag` for booleans, with ranges checked at parse time and a generated --help. (absl::flags
// cannot spell the hyphenated names our interfaces use, such as --prompt-ids.)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace iquest {

class FlagParser {
 public:
  FlagParser(std::string program, std::string summary);

  void AddString(std::string name, std::string* target, std::string help);
  void AddInt(std::string name, int64_t* target, std::string help, int64_t min, int64_t max);
  void AddDouble(std::string name, double* target, std::string help, double min, double max);
  void AddBool(std::string name, bool* target, std::string help);

  // Parses argv[1..]. Unknown flags, missing values, bad numbers and out-of-range values are
  // kInvalidArgument naming the flag and the allowed range.
  absl::Status Parse(int argc, char** argv);
  bool help_requested() const { return help_requested_; }
  std::string Help() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool;
    std::function<absl::Status(const std::string&)> set;
  };
  const Flag* Find(const std::string& name) const;

  std::string program_;
  std::string summary_;
  std::vector<Flag> flags_;
  bool help_requested_ = false;
};

// Parses "1,2,3" into integers; each must be in [min, max].
absl::Status ParseIntList(const std::string& text, int64_t min, int64_t max,
                          std::vector<int32_t>* out);

// Parses a command line for a tool, printing --help or the error and exiting when parsing
// does not lead to a run.
void ParseFlagsOrExit(FlagParser& parser, int argc, char** argv);

}  // namespace iquest
