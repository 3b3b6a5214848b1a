// iquest-perplexity: a model's perplexity on a text file, computed as llama-perplexity computes
// it (tools/eval/perplexity.h), so that the same file scored by both can be compared. Prints
// llama-perplexity's lines: "[1]x.xxxx,[2]x.xxxx,..." and "Final estimate: PPL = x.xxxx +/-
// x.xxxxx".
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "kernels/backend_flags.h"
#include "kernels/make_backend.h"
#include "model/model_files.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/eval/perplexity.h"

namespace iquest {
namespace {

absl::Status Run(const std::string& model_path, const std::string& text_file,
                 const PerplexityOptions& flags_options, const BackendOptions& backend_options) {
  std::ifstream in(text_file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(text_file, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  ASSIGN_OR_RETURN(const ModelFiles files, FindModelFiles(model_path));
  ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Load(files.folder));
  // As llama.cpp's common_tokenize(text, add_special = true): the tokenizer's own BOS rule.
  ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                   tokenizer->Encode(text.str(), /*add_special_tokens=*/true));
  PerplexityOptions options = flags_options;
  const bool adds_bos =
      tokenizer->bos_id() >= 0 && !tokens.empty() && tokens.front() == tokenizer->bos_id();
  options.bos_id = adds_bos ? tokenizer->bos_id() : -1;
  ASSIGN_OR_RETURN(auto backend, MakeBackend(Device::kCpu, backend_options));
  ASSIGN_OR_RETURN(auto model, LlamaModel::Load(model_path, *backend));
  std::fprintf(stderr, "perplexity: %zu tokens, %ld-token chunks, backend %s\n", tokens.size(),
               static_cast<long>(options.context), std::string(backend->name()).c_str());
  ASSIGN_OR_RETURN(const Perplexity result, LlamaCppPerplexity(*model, std::move(tokens), options));
  for (size_t c = 0; c < result.running_ppl.size(); ++c) {
    std::printf("[%zu]%.4f,", c + 1, result.running_ppl[c]);
  }
  std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", result.ppl, result.uncertainty);
  std::fprintf(stderr, "perplexity: %ld tokens scored in %zu chunks\n",
               static_cast<long>(result.scored_tokens), result.running_ppl.size());
  return absl::OkStatus();
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  std::string model_path, text_file;
  iquest::PerplexityOptions options;
  iquest::BackendOptions backend_options;
  iquest::FlagParser flags(
      "iquest-perplexity",
      "Perplexity of a model on a text file, as llama-perplexity computes it.");
  flags.AddString("model", &model_path, "HF checkpoint folder or a .gguf file");
  flags.AddString("text-file", &text_file, "the text (UTF-8); at least 2 * --ctx tokens");
  flags.AddInt("ctx", &options.context, "tokens per chunk (llama-perplexity's -c)", 4, 1 << 20);
  flags.AddInt("chunks", &options.max_chunks, "chunks to score; -1 = all (--chunks)", -1, 1 << 30);
  flags.AddInt("batch", &options.batch, "prefill tokens per forward pass; 0 = a whole chunk", 0,
               1 << 20);
  iquest::RegisterBackendFlags(flags, &backend_options);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  iquest::SetMinLogLevel(iquest::LogLevel::kWarning);
  if (model_path.empty() || text_file.empty()) {
    std::fprintf(stderr, "error: --model and --text-file are required\n");
    return 2;
  }
  const absl::Status status = iquest::Run(model_path, text_file, options, backend_options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
