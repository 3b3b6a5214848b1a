// libFuzzer: tokenizer_config.json parsing on arbitrary bytes, then what the server does with a
// config: parse its chat template (Jinja) and render and encode a conversation with it
// (a built-in byte-level tokenizer carries the config's added tokens).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/check.h"
#include "model/tokenizer/chat_template.h"
#include "model/tokenizer/hf_tokenizer.h"
#include "model/tokenizer/tokenizer_config.h"
#include "tests/model/tokenizer/mini_tokenizers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = iquest::ParseTokenizerConfig(text);
  if (!config.ok()) return 0;
  static const std::string kJson = iquest::testing::ByteLevelTokenizerJson().dump();
  auto tokenizer = iquest::HfTokenizer::Create(kJson, *config);
  if (!tokenizer.ok()) return 0;
  for (const char* family : {"", "chatml", "llama3", "llama2"}) {
    auto chat_template = iquest::ChatTemplateFor(**tokenizer, family);
    if (!chat_template.ok()) continue;
    const std::vector<iquest::ChatMessage> messages = {
        {"system", "be brief"}, {"user", "hi <|eot_id|>"}, {"assistant", "ok"}, {"user", "x"}};
    auto rendered = iquest::RenderChat(*chat_template, messages, true);
    if (!rendered.ok()) continue;
    for (const iquest::ByteRange& r : rendered->content) {
      CHECK(r.begin <= r.end && r.end <= rendered->text.size());
    }
    auto ids = iquest::EncodeChat(**tokenizer, *rendered);
    if (ids.ok()) (void)(*tokenizer)->Decode(*ids, true);
  }
  return 0;
}
