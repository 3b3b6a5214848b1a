// iquest-convert-hf-to-gguf: writes an HF checkpoint folder as one GGUF file that llama.cpp
// (and iquest-serve) can load. See tools/hf_to_gguf.h for what is written.
#include <cstdio>

#include "common/flags.h"
#include "tools/hf_to_gguf.h"

int main(int argc, char** argv) {
  iquest::HfToGgufOptions options;
  iquest::FlagParser flags("iquest-convert-hf-to-gguf",
                           "Converts an HF checkpoint (config.json, safetensors, SentencePiece "
                           "tokenizer.model) to GGUF.");
  flags.AddString("model", &options.model_dir, "HF checkpoint folder");
  flags.AddString("out", &options.out_path, "output .gguf file");
  flags.AddString("dtype", &options.dtype,
                  "dtype of the 2-D tensors: keep, f32, f16 or bf16 (norms and biases are f32)");
  flags.AddString("name", &options.name, "general.name (default: the folder's name)");
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (options.model_dir.empty() || options.out_path.empty()) {
    std::fprintf(stderr, "error: --model and --out are required\n");
    return 2;
  }
  const absl::Status status = iquest::ConvertHfToGguf(options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
