// iquest-quantize: writes an HF checkpoint folder as a quantized GGUF file (Q8_0, Q4_0, Q4_K,
// Q5_K, Q6_K blocks, or llama.cpp's Q4_K_M / Q5_K_M mixes) that llama.cpp and iquest-serve load.
// The tensors' types follow tools/gguf_quant_plan.h; everything else is as
// iquest-convert-hf-to-gguf writes it.
#include <cstdio>

#include "common/flags.h"
#include "tools/hf_to_gguf.h"

int main(int argc, char** argv) {
  iquest::HfToGgufOptions options;
  options.dtype = "f16";  // Of 2-D tensors whose rows are not whole blocks.
  iquest::FlagParser flags("iquest-quantize",
                           "Quantizes an HF checkpoint (config.json, safetensors, SentencePiece "
                           "tokenizer.model) into a GGUF file.");
  flags.AddString("model", &options.model_dir, "HF checkpoint folder");
  flags.AddString("out", &options.out_path, "output .gguf file");
  flags.AddString("type", &options.quant, "q8_0, q6_k, q5_k_m, q5_k, q4_k_m, q4_k or q4_0");
  flags.AddString("name", &options.name, "general.name (default: the folder's name)");
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (options.model_dir.empty() || options.out_path.empty() || options.quant.empty()) {
    std::fprintf(stderr, "error: --model, --out and --type are required\n");
    return 2;
  }
  const absl::Status status = iquest::ConvertHfToGguf(options);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
