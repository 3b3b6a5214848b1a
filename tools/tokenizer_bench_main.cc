// iquest-tokenizer-bench: encode and decode throughput (MB/s of text) of a model folder's
// tokenizer on a JSONL corpus of strings, and on the adversarial inputs (1 MB of one letter, of
// spaces, of "a.") whose throughput must stay within 3x of ordinary text. Prints one row per
// workload. scripts/tokenizer-bench.sh runs it next to transformers.js on the same corpus.
#include <chrono>
#include <cstdio>
#include <fstream>
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
  std::string corpus;
  double seconds = 1.0;
};

using Clock = std::chrono::steady_clock;

// Runs `pass` (which returns the bytes of text it handled) after one warm-up pass, until at
// least `seconds` have elapsed; returns MB/s (1 MB = 1e6 bytes).
template <typename Pass>
double Throughput(double seconds, Pass pass) {
  pass();
  size_t bytes = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  do {
    bytes += pass();
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return static_cast<double>(bytes) / 1e6 / elapsed;
}

absl::StatusOr<std::vector<std::string>> ReadCorpus(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::vector<std::string> texts;
  std::string line;
  while (std::getline(file, line)) {
    ASSIGN_OR_RETURN(const nlohmann::json value, ParseJsonStrict(unicode::RepairUtf8(line), path));
    if (!value.is_string()) return absl::InvalidArgumentError(path + ": expected JSON strings");
    texts.push_back(value.get<std::string>());
  }
  return texts;
}

absl::StatusOr<double> EncodeThroughput(const Tokenizer& tokenizer,
                                        const std::vector<std::string>& texts, double seconds,
                                        size_t* num_tokens) {
  absl::Status status;
  const double mbps = Throughput(seconds, [&] {
    size_t bytes = 0;
    *num_tokens = 0;
    for (const std::string& text : texts) {
      auto ids = tokenizer.Encode(text, /*add_special_tokens=*/false);
      if (!ids.ok()) status = ids.status();
      *num_tokens += ids.ok() ? ids->size() : 0;
      bytes += text.size();
    }
    return bytes;
  });
  RETURN_IF_ERROR(status);
  return mbps;
}

void PrintRow(const std::string& workload, size_t bytes, size_t tokens, double mbps,
              double reference_mbps) {
  std::printf("%-24s %10zu %10zu %12.2f %10.2fx\n", workload.c_str(), bytes, tokens, mbps,
              reference_mbps / mbps);
}

absl::Status Run(const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::Load(options.model_dir));
  ASSIGN_OR_RETURN(const std::vector<std::string> corpus, ReadCorpus(options.corpus));
  size_t corpus_bytes = 0;
  for (const std::string& text : corpus) corpus_bytes += text.size();
  std::printf("%-24s %10s %10s %12s %11s\n", "workload", "bytes", "tokens", "MB/s", "slowdown");
  size_t tokens = 0;
  ASSIGN_OR_RETURN(const double encode_mbps,
                   EncodeThroughput(*tokenizer, corpus, options.seconds, &tokens));
  PrintRow("encode corpus", corpus_bytes, tokens, encode_mbps, encode_mbps);

  std::vector<std::vector<int32_t>> ids;
  for (const std::string& text : corpus) {
    ASSIGN_OR_RETURN(std::vector<int32_t> line_ids, tokenizer->Encode(text, false));
    ids.push_back(std::move(line_ids));
  }
  const double decode_mbps = Throughput(options.seconds, [&] {
    size_t bytes = 0;
    for (const auto& line_ids : ids) bytes += tokenizer->Decode(line_ids, false).size();
    return bytes;
  });
  PrintRow("decode corpus", corpus_bytes, tokens, decode_mbps, decode_mbps);

  constexpr size_t kMegabyte = 1 << 20;
  const std::pair<const char*, std::string> adversarial[] = {
      {"encode 1 MB 'a'", std::string(kMegabyte, 'a')},
      {"encode 1 MB spaces", std::string(kMegabyte, ' ')},
      {"encode 1 MB 'a.'",
       [] {
         std::string s;
         for (size_t i = 0; i < kMegabyte / 2; ++i) s += "a.";
         return s;
       }()},
  };
  for (const auto& [name, text] : adversarial) {
    ASSIGN_OR_RETURN(const double mbps,
                     EncodeThroughput(*tokenizer, {text}, options.seconds, &tokens));
    PrintRow(name, text.size(), tokens, mbps, encode_mbps);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  iquest::Options options;
  iquest::FlagParser flags("iquest-tokenizer-bench",
                           "Measures tokenizer encode/decode throughput on --corpus (one JSON "
                           "string per line) and on adversarial inputs.");
  flags.AddString("model", &options.model_dir, "folder with tokenizer.json or tokenizer.model");
  flags.AddString("corpus", &options.corpus, "JSONL file of strings (the ordinary text)");
  flags.AddDouble("seconds", &options.seconds, "minimum measuring time per workload", 0.01, 600);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (options.model_dir.empty() || options.corpus.empty()) {
    std::fprintf(stderr, "error: --model and --corpus are required\n");
    return 2;
  }
  const absl::Status status = iquest::Run(options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
