// iquest-tokenize: offline tokenizer CLI over a model folder (tokenizer.json or tokenizer.model).
//   --jsonl FILE         one JSON string per line -> one JSON list of ids per line
//   --decode-jsonl FILE  one JSON list of ids per line -> one JSON string per line
//                        (--skip-special drops special tokens; --stream decodes id by id)
// Invalid UTF-8 bytes in an input line are replaced (WHATWG rules) before the JSON is parsed.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/status.h"
#include "model/json_util.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/unicode.h"

namespace iquest {
namespace {

struct Options {
  std::string model_dir;
  std::string jsonl;
  std::string decode_jsonl;
  bool no_special = false;
  bool skip_special = false;
  bool stream = false;
};

std::string DumpString(const std::string& text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::Status EncodeLine(const Tokenizer& tokenizer, const std::string& line, bool add_special,
                        const std::string& where, std::string* out) {
  ASSIGN_OR_RETURN(const nlohmann::json value, ParseJsonStrict(unicode::RepairUtf8(line), where));
  if (!value.is_string()) return absl::InvalidArgumentError(where + ": expected a JSON string");
  ASSIGN_OR_RETURN(const std::vector<int32_t> ids,
                   tokenizer.Encode(value.get_ref<const std::string&>(), add_special));
  out->push_back('[');
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(out, i == 0 ? "" : ",", ids[i]);
  out->append("]\n");
  return absl::OkStatus();
}

absl::Status DecodeLine(const Tokenizer& tokenizer, const std::string& line, bool skip_special,
                        bool stream, const std::string& where, std::string* out) {
  ASSIGN_OR_RETURN(const nlohmann::json value, ParseJsonStrict(line, where));
  if (!value.is_array()) return absl::InvalidArgumentError(where + ": expected a JSON list of ids");
  std::vector<int32_t> ids;
  for (const auto& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(where + ": ids must be 32-bit integers");
    }
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  std::string text;
  if (stream) {
    // Through the streaming detokenizer, one id at a time: must equal the one-shot decode.
    IncrementalDetokenizer detokenizer(tokenizer, skip_special);
    for (const int32_t id : ids) text += detokenizer.Push(id);
    text += detokenizer.Flush();
  } else {
    text = tokenizer.Decode(ids, skip_special);
  }
  absl::StrAppend(out, DumpString(text), "\n");
  return absl::OkStatus();
}

absl::Status Run(const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::Load(options.model_dir));
  const bool decode = !options.decode_jsonl.empty();
  const std::string& path = decode ? options.decode_jsonl : options.jsonl;
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string line, out;
  for (int64_t number = 1; std::getline(file, line); ++number) {
    const std::string where = absl::StrCat(path, ":", number);
    if (decode) {
      RETURN_IF_ERROR(
          DecodeLine(*tokenizer, line, options.skip_special, options.stream, where, &out));
    } else {
      RETURN_IF_ERROR(EncodeLine(*tokenizer, line, !options.no_special, where, &out));
    }
    if (out.size() > (1 << 20)) {
      std::fwrite(out.data(), 1, out.size(), stdout);
      out.clear();
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return absl::OkStatus();
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  iquest::Options options;
  iquest::FlagParser flags("iquest-tokenize",
                           "Encodes (--jsonl) or decodes (--decode-jsonl) one JSON value per line "
                           "with the tokenizer of --model.");
  flags.AddString("model", &options.model_dir, "folder with tokenizer.json or tokenizer.model");
  flags.AddString("jsonl", &options.jsonl, "file of JSON strings to encode, one per line");
  flags.AddString("decode-jsonl", &options.decode_jsonl, "file of JSON id lists to decode");
  flags.AddBool("no-special", &options.no_special, "encode without adding BOS/EOS");
  flags.AddBool("skip-special", &options.skip_special, "decode without special tokens");
  flags.AddBool("stream", &options.stream, "decode through the incremental detokenizer");
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (options.model_dir.empty() || options.jsonl.empty() == options.decode_jsonl.empty()) {
    std::fprintf(stderr, "error: give --model and exactly one of --jsonl, --decode-jsonl\n");
    return 2;
  }
  const absl::Status status = iquest::Run(options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
