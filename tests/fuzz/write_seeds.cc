// iquest-fuzz-seeds DIR: writes a small seed corpus per fuzzer under DIR/<fuzzer>/, each a valid
// input of the shape that fuzzer reads (made by the same code the tests use), so libFuzzer
// starts from the formats' real structure instead of from nothing.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "iquest/serve/v1/generation.pb.h"
#include "model/gguf_writer.h"
#include "model/safetensors_writer.h"
#include "tests/model/tokenizer/mini_tokenizers.h"
#include "tools/tiny_model.h"

namespace iquest {
namespace {

bool WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  return static_cast<bool>(out);
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool Safetensors(const std::filesystem::path& dir) {
  TinyModelOptions options;
  options.hidden_size = 8;
  options.num_layers = 1;
  options.num_heads = 2;
  options.num_kv_heads = 1;
  options.intermediate_size = 16;
  options.vocab_size = 16;
  const std::filesystem::path model = dir / "tiny-model";
  if (!WriteTinyModel(model.string(), options).ok()) return false;
  const bool ok = WriteFile(dir / "tiny.safetensors", ReadFile(model / "model.safetensors"));
  std::filesystem::remove_all(model);
  std::vector<TensorToWrite> tensors = {{"a", "F32", {2}, std::vector<uint8_t>(8, 1)},
                                        {"b", "BF16", {1, 2}, std::vector<uint8_t>(4, 2)}};
  return ok && WriteSafetensors((dir / "two.safetensors").string(), tensors).ok();
}

bool Gguf(const std::filesystem::path& dir) {
  GgufWriter writer;
  writer.SetString("general.architecture", "llama");
  writer.SetU32("llama.block_count", 1);
  writer.SetF32("llama.rope.freq_base", 10000.0f);
  writer.SetBool("tokenizer.ggml.add_bos_token", true);
  writer.SetStringArray("tokenizer.ggml.tokens", {"<s>", "</s>", "a"});
  writer.SetI32Array("tokenizer.ggml.token_type", {3, 3, 1});
  writer.SetF32Array("tokenizer.ggml.scores", {0, 0, -1});
  static const std::vector<float> values = {1, 2, 3, 4};
  writer.AddTensor("token_embd.weight", GgmlType::kF32, {2, 2},
                   [](std::vector<uint8_t>&) -> absl::StatusOr<std::span<const uint8_t>> {
                     return std::span<const uint8_t>(
                         reinterpret_cast<const uint8_t*>(values.data()), 16);
                   });
  return writer.Write((dir / "tiny.gguf").string()).ok();
}

bool TokenizerJson(const std::filesystem::path& dir) {
  return WriteFile(dir / "byte_level.json", testing::ByteLevelTokenizerJson().dump()) &&
         WriteFile(dir / "byte_level_pairs.json",
                   testing::ByteLevelTokenizerJson(/*pair_merges=*/true).dump()) &&
         WriteFile(dir / "spm_style.json", testing::SpmStyleTokenizerJson().dump());
}

bool TokenizerConfigs(const std::filesystem::path& dir) {
  return WriteFile(dir / "chatml.json", R"({"bos_token": null, "eos_token": "<|im_end|>",
  "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
  "added_tokens_decoder": {"300": {"content": "<|im_start|>", "special": true},
                           "301": {"content": "<|im_end|>", "special": true}}})") &&
         WriteFile(dir / "llama3.json", R"({"bos_token": "<|begin_of_text|>",
  "eos_token": {"content": "<|eot_id|>", "lstrip": false}, "add_bos_token": true,
  "clean_up_tokenization_spaces": true,
  "chat_template": "{{ '<|start_header_id|>' + m.role + '<|end_header_id|>' }}",
  "additional_special_tokens": ["<|eot_id|>"]})") &&
         WriteFile(dir / "llama2.json", R"({"bos_token": "<s>", "eos_token": "</s>",
  "chat_template": [{"name": "default", "template": "[INST] {{ m }} [/INST]"}]})");
}

bool Requests(const std::filesystem::path& dir) {
  using serve::v1::GenerateRequest;
  std::vector<GenerateRequest> requests(4);
  for (int id : {1, 2, 3, 250}) requests[0].mutable_token_ids()->add_ids(id);
  requests[0].mutable_sampling()->set_max_tokens(8);
  requests[1] = requests[0];
  serve::v1::SamplingParams* s = requests[1].mutable_sampling();
  s->set_temperature(0.7f);
  s->set_top_k(40);
  s->set_top_p(0.9f);
  s->set_min_p(0.05f);
  s->set_seed(7);
  s->set_n(2);
  s->set_logprobs(3);
  s->set_prompt_logprobs(1);
  s->add_stop_token_ids(2);
  (*s->mutable_logit_bias())[5] = -3.0f;
  s->set_repetition_penalty(1.1f);
  requests[1].set_request_id("seed-1");
  requests[1].set_priority(-3);
  requests[1].set_tenant("team-a");
  requests[1].set_cache_salt("salt");
  requests[2].set_text("def f(x):\n    return x");
  requests[3].mutable_chat()->add_messages()->set_content("hi");
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!WriteFile(dir / ("request" + std::to_string(i) + ".pb"),
                   requests[i].SerializeAsString())) {
      return false;
    }
  }
  return true;
}

// First byte: the endpoint (even: completions, odd: chat); then the JSON body.
bool OpenAiRequests(const std::filesystem::path& dir) {
  const char* bodies[] = {
      "\x00{\"model\": \"m\", \"prompt\": \"def f(\", \"max_tokens\": 8, \"temperature\": 0.7, "
      "\"stop\": [\"\\n\"], \"logprobs\": 2, \"echo\": true, \"seed\": 3}",
      "\x00{\"prompt\": [[1, 2, 3], [4, 5]], \"n\": 2, \"logit_bias\": {\"5\": -100}, "
      "\"stream\": true, \"stream_options\": {\"include_usage\": true}}",
      "\x01{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": "
      "\"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi\"}]}], \"logprobs\": true, "
      "\"top_logprobs\": 2, \"max_completion_tokens\": 4, \"top_k\": -1}",
      "\x01{\"messages\": [], \"tools\": [{}], \"response_format\": {\"type\": \"json\"}}",
  };
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); ++i) {
    // The bodies hold a NUL as their first byte: sized by hand.
    const std::string body(bodies[i], 1 + std::strlen(bodies[i] + 1));
    if (!WriteFile(dir / ("body" + std::to_string(i) + ".bin"), body)) return false;
  }
  return true;
}

}  // namespace
}  // namespace iquest

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: iquest-fuzz-seeds DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  struct Corpus {
    const char* fuzzer;
    bool (*write)(const std::filesystem::path&);
  };
  const Corpus corpora[] = {{"safetensors_fuzz", iquest::Safetensors},
                            {"gguf_fuzz", iquest::Gguf},
                            {"tokenizer_json_fuzz", iquest::TokenizerJson},
                            {"tokenizer_config_fuzz", iquest::TokenizerConfigs},
                            {"generate_request_fuzz", iquest::Requests},
                            {"openai_request_fuzz", iquest::OpenAiRequests}};
  for (const Corpus& c : corpora) {
    const std::filesystem::path dir = root / c.fuzzer;
    std::filesystem::create_directories(dir);
    if (!c.write(dir)) {
      std::fprintf(stderr, "error: cannot write the %s seeds in %s\n", c.fuzzer, dir.c_str());
      return 1;
    }
  }
  return 0;
}
