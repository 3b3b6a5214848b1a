// iquest-make-tiny-model: writes a deterministic random-weight checkpoint in HF layout.
#include <cstdio>

#include "common/flags.h"
#include "tools/tiny_model.h"

int main(int argc, char** argv) {
  iquest::TinyModelOptions o;
  std::string out;
  int64_t seed = 42;
  bool tie = false;
  iquest::FlagParser flags("iquest-make-tiny-model",
                           "Writes config.json + model.safetensors with random weights.");
  flags.AddString("out", &out, "output folder (created if missing)");
  flags.AddString("arch", &o.arch, "llama, mistral, qwen2 or loop (IQuestLoopCoderForCausalLM)");
  flags.AddInt("hidden", &o.hidden_size, "hidden size", 1, 1 << 16);
  flags.AddInt("layers", &o.num_layers, "number of layers", 1, 1024);
  flags.AddInt("heads", &o.num_heads, "attention heads", 1, 1024);
  flags.AddInt("kv-heads", &o.num_kv_heads, "key/value heads", 1, 1024);
  flags.AddInt("head-dim", &o.head_dim, "head dim; 0 = hidden / heads", 0, 1024);
  flags.AddInt("intermediate", &o.intermediate_size, "MLP intermediate size", 1, 1 << 18);
  flags.AddInt("vocab", &o.vocab_size, "vocabulary size", 3, 1 << 22);
  flags.AddInt("max-position", &o.max_position_embeddings, "max_position_embeddings", 1, 1 << 24);
  flags.AddInt("seed", &seed, "random seed", 0, INT64_MAX);
  flags.AddString("dtype", &o.dtype, "f32, f16 or bf16");
  flags.AddBool("tie-embeddings", &tie, "tie lm_head to the embeddings");
  flags.AddString("rope-scaling", &o.rope_scaling, "none, linear or llama3");
  flags.AddDouble("rope-theta", &o.rope_theta, "RoPE base", 2.0, 1e12);
  flags.AddInt("sliding-window", &o.sliding_window,
               "sliding window in tokens (mistral: every layer; qwen2: layers >= 1); 0 = none", 0,
               1 << 24);
  flags.AddInt("loop-num", &o.loop_num, "loop: passes over the layers (loop_num)", 1, 16);
  flags.AddInt("window", &o.loop_window, "loop: the local branch's window (loop_window_size)", 1,
               1 << 24);
  flags.AddDouble("gate-bias", &o.gate_bias, "loop: centre of the gate biases (real: ~2)", -100,
                  100);
  flags.AddDouble("gate-scale", &o.gate_scale, "loop: gate weights' std x sqrt(head_dim)", 0, 100);
  iquest::ParseFlagsOrExit(flags, argc, argv);
  if (out.empty()) {
    std::fprintf(stderr, "error: --out is required\n");
    return 2;
  }
  o.seed = static_cast<uint64_t>(seed);
  o.tie_word_embeddings = tie;
  const absl::Status status = iquest::WriteTinyModel(out, o);
  if (!status.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
