// libFuzzer: tokenizer.json loading on arbitrary bytes. A document that loads is then used:
// a fixed text (with special-token strings) is encoded with and without special-token parsing
// and decoded back, so a vocabulary, merge list or added-token table the loader accepted but
// cannot serve shows up here, not in a server.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/check.h"
#include "model/tokenizer/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  auto tokenizer = iquest::HfTokenizer::Create(json, iquest::TokenizerConfig{});
  if (!tokenizer.ok()) return 0;
  const std::string text = "def f(x):\n  return x<|eot_id|> \xc3\xa9t\xc3\xa9 \xff 123";
  for (bool parse_special : {true, false}) {
    iquest::EncodeOptions options;
    options.parse_special_tokens = parse_special;
    auto ids = (*tokenizer)->Encode(text, options);
    if (!ids.ok()) continue;
    for (int32_t id : *ids) CHECK(id >= 0 && id < (*tokenizer)->vocab_size()) << id;
    (void)(*tokenizer)->Decode(*ids, /*skip_special_tokens=*/false);
  }
  return 0;
}
