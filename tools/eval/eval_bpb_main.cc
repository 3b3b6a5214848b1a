// iquest-eval-bpb: the model-quality gate's perplexity check. Our engine scores the held-out
// files stored beside a model (eval/validation.jsonl) and the result must be
//   1. at most the threshold stored in eval/bits_per_byte.json, and
//   2. within --tolerance (relative) of the figure PyTorch computed there for the same files.
// Prints one line of figures; exits 1 when either check fails.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/json_util.h"
#include "model/llama.h"
#include "model/manifest.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/eval/bits_per_byte.h"

namespace iquest {
namespace {

struct Options {
  std::string model_dir;
  std::string validation;  // Default: <model>/eval/validation.jsonl.
  std::string expected;    // Default: <model>/eval/bits_per_byte.json.
  std::string json_out;
  double tolerance = 0.01;
  bool allow_manifest_mismatch = false;
  BackendOptions backend;
};

struct Expected {
  double bits_per_byte = 0;
  double threshold = 0;
  int64_t context = 0;
};

absl::StatusOr<Expected> ReadExpected(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(const nlohmann::json json, ParseJsonStrict(text, path));
  if (!json.is_object()) return absl::InvalidArgumentError(path + ": must be a JSON object");
  const JsonReader reader(json, path);
  Expected expected;
  ASSIGN_OR_RETURN(expected.bits_per_byte, reader.Number("bits_per_byte"));
  ASSIGN_OR_RETURN(expected.threshold, reader.Number("threshold"));
  const auto training = json.find("training");
  if (training == json.end() || !training->is_object()) {
    return reader.FieldError("training", "must be an object");
  }
  ASSIGN_OR_RETURN(expected.context, JsonReader(*training, path, "training.").Int("context"));
  return expected;
}

// One {"path": ..., "text": ...} object per line.
absl::StatusOr<std::vector<std::string>> ReadValidation(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<std::string> texts;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = absl::StrCat(path, ":", number);
    ASSIGN_OR_RETURN(const nlohmann::json json, ParseJsonStrict(line, where));
    if (!json.is_object()) return absl::InvalidArgumentError(where + ": must be a JSON object");
    ASSIGN_OR_RETURN(std::string text, JsonReader(json, where).String("text"));
    texts.push_back(std::move(text));
  }
  if (texts.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no files"));
  return texts;
}

absl::StatusOr<bool> Run(const Options& options) {
  RETURN_IF_ERROR(CheckModelManifest(options.model_dir, options.allow_manifest_mismatch).status());
  ASSIGN_OR_RETURN(const Expected expected, ReadExpected(options.expected));
  ASSIGN_OR_RETURN(const std::vector<std::string> texts, ReadValidation(options.validation));
  ASSIGN_OR_RETURN(auto backend, MakeBackend(Device::kCpu, options.backend));
  ASSIGN_OR_RETURN(auto model, LlamaModel::Load(options.model_dir, *backend));
  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(options.model_dir));
  ASSIGN_OR_RETURN(const BitsPerByte ours,
                   HeldOutBitsPerByte(*model, *tokenizer, texts, expected.context));
  const double relative = std::abs(ours.value() - expected.bits_per_byte) / expected.bits_per_byte;
  const bool below = ours.value() <= expected.threshold;
  const bool agrees = relative <= options.tolerance;
  const std::string summary = absl::StrFormat(
      "{\"bits_per_byte\": %.6f, \"pytorch_bits_per_byte\": %.6f, \"relative_difference\": %.6f, "
      "\"threshold\": %.4f, \"tolerance\": %.4f, \"scored_tokens\": %d, \"bytes\": %d, "
      "\"files\": %d, \"below_threshold\": %s, \"agrees_with_pytorch\": %s}",
      ours.value(), expected.bits_per_byte, relative, expected.threshold, options.tolerance,
      ours.scored_tokens, ours.bytes, texts.size(), below ? "true" : "false",
      agrees ? "true" : "false");
  std::printf("%s\n", summary.c_str());
  if (!options.json_out.empty()) {
    std::ofstream out(options.json_out, std::ios::trunc);
    out << summary << "\n";
    if (!out) return absl::DataLossError(absl::StrCat(options.json_out, ": write failed"));
  }
  if (!below) {
    std::fprintf(stderr, "error: held-out bits per byte %.4f exceeds the threshold %.4f (%s)\n",
                 ours.value(), expected.threshold, options.expected.c_str());
  }
  if (!agrees) {
    std::fprintf(stderr,
                 "error: our engine's %.4f and PyTorch's %.4f bits per byte differ by %.2f %% "
                 "(tolerance %.2f %%)\n",
                 ours.value(), expected.bits_per_byte, 100 * relative, 100 * options.tolerance);
  }
  return below && agrees;
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  iquest::Options options;
  iquest::FlagParser flags("iquest-eval-bpb",
                           "Held-out bits per byte of a model by our engine, checked against the "
                           "threshold and PyTorch's figure stored beside it.");
  flags.AddString("model", &options.model_dir, "HF checkpoint folder, e.g. models/demo");
  flags.AddString("validation", &options.validation,
                  "held-out files, one {\"path\", \"text\"} per line; default "
                  "<model>/eval/validation.jsonl");
  flags.AddString("expected", &options.expected,
                  "PyTorch's figure and the threshold; default <model>/eval/bits_per_byte.json");
  flags.AddString("json-out", &options.json_out, "also write the summary line to this file");
  flags.AddDouble("tolerance", &options.tolerance, "largest relative difference from PyTorch", 0,
                  1);
  flags.AddBool("allow-manifest-mismatch", &options.allow_manifest_mismatch,
                "evaluate a model whose files differ from its manifest.json");
  iquest::RegisterBackendFlags(flags, &options.backend);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (options.model_dir.empty()) {
    std::fprintf(stderr, "error: --model is required\n");
    return 2;
  }
  if (options.validation.empty()) options.validation = options.model_dir + "/eval/validation.jsonl";
  if (options.expected.empty()) options.expected = options.model_dir + "/eval/bits_per_byte.json";
  const absl::StatusOr<bool> passed = iquest::Run(options);
  if (!passed.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(passed.status().message()).c_str());
    return 1;
  }
  return *passed ? 0 : 1;
}
