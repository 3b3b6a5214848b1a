#include "common/flags.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace iquest {

FlagParser::FlagParser(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void FlagParser::AddString(std::string name, std::string* target, std::string help) {
  std::string default_text = target->empty() ? "" : *target;
  flags_.push_back(
      {std::move(name), std::move(help), default_text, false, [target](const std::string& value) {
         *target = value;
         return absl::OkStatus();
       }});
}

void FlagParser::AddInt(std::string name, int64_t* target, std::string help, int64_t min,
                        int64_t max) {
  const std::string flag = "--" + name;
  flags_.push_back({std::move(name), absl::StrCat(help, " [", min, ", ", max, "]"),
                    absl::StrCat(*target), false, [=](const std::string& value) {
                      int64_t parsed;
                      if (!absl::SimpleAtoi(value, &parsed) || parsed < min || parsed > max) {
                        return absl::InvalidArgumentError(
                            absl::StrCat(flag, ": expected an integer in [", min, ", ", max,
                                         "], got '", value, "'"));
                      }
                      *target = parsed;
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddDouble(std::string name, double* target, std::string help, double min,
                           double max) {
  const std::string flag = "--" + name;
  flags_.push_back({std::move(name), absl::StrCat(help, " [", min, ", ", max, "]"),
                    absl::StrCat(*target), false, [=](const std::string& value) {
                      double parsed;
                      // The negated form rejects NaN as well as out-of-range values.
                      if (!absl::SimpleAtod(value, &parsed) || !(parsed >= min && parsed <= max)) {
                        return absl::InvalidArgumentError(
                            absl::StrCat(flag, ": expected a number in [", min, ", ", max,
                                         "], got '", value, "'"));
                      }
                      *target = parsed;
                      return absl::OkStatus();
                    }});
}

void FlagParser::AddBool(std::string name, bool* target, std::string help) {
  const std::string flag = "--" + name;
  flags_.push_back({std::move(name), std::move(help), *target ? "true" : "false", true,
                    [=](const std::string& value) {
                      if (value == "true" || value == "1") {
                        *target = true;
                      } else if (value == "false" || value == "0") {
                        *target = false;
                      } else {
                        return absl::InvalidArgumentError(
                            absl::StrCat(flag, ": expected true or false, got '", value, "'"));
                      }
                      return absl::OkStatus();
                    }});
}

const FlagParser::Flag* FlagParser::Find(const std::string& name) const {
  for (const Flag& flag : flags_) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

absl::Status FlagParser::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_requested_ = true;
      return absl::OkStatus();
    }
    if (arg.rfind("--", 0) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    arg = arg.substr(2);
    std::string value;
    const size_t equals = arg.find('=');
    const bool has_value = equals != std::string::npos;
    if (has_value) {
      value = arg.substr(equals + 1);
      arg = arg.substr(0, equals);
    }
    const Flag* flag = Find(arg);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", arg, " (see --help)"));
    }
    if (!has_value && flag->is_bool) {
      value = "true";
    } else if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat("--", arg, ": missing value"));
      }
      value = argv[++i];
    }
    const absl::Status status = flag->set(value);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

std::string FlagParser::Help() const {
  std::ostringstream out;
  out << "Usage: " << program_ << " [flags]\n" << summary_ << "\n\nFlags:\n";
  for (const Flag& flag : flags_) {
    out << "  --" << flag.name << (flag.is_bool ? "" : " VALUE") << "\n      " << flag.help;
    if (!flag.default_text.empty()) out << " (default: " << flag.default_text << ")";
    out << "\n";
  }
  return out.str();
}

absl::Status ParseIntList(const std::string& text, int64_t min, int64_t max,
                          std::vector<int32_t>* out) {
  out->clear();
  if (text.empty()) return absl::OkStatus();
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t value;
    if (!absl::SimpleAtoi(part, &value) || value < min || value > max) {
      return absl::InvalidArgumentError(absl::StrCat("expected integers in [", min, ", ", max,
                                                     "], got '", std::string(part), "'"));
    }
    out->push_back(static_cast<int32_t>(value));
  }
  return absl::OkStatus();
}

void ParseFlagsOrExit(FlagParser& parser, int argc, char** argv) {
  const absl::Status status = parser.Parse(argc, argv);
  if (parser.help_requested()) {
    std::fputs(parser.Help().c_str(), stdout);
    std::exit(0);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    std::exit(2);
  }
}

}  // namespace iquest
