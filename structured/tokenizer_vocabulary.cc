#include "structured/tokenizer_vocabulary.h"

#include <algorithm>
#include <string>
#include <vector>

namespace iquest {

std::shared_ptr<const TokenVocabulary> BuildTokenVocabulary(const Tokenizer& tokenizer,
                                                            int64_t model_vocab_size) {
  std::vector<std::string> bytes(static_cast<size_t>(model_vocab_size));
  std::vector<bool> excluded(static_cast<size_t>(model_vocab_size), true);
  const int64_t known = std::min<int64_t>(model_vocab_size, tokenizer.vocab_size());
  for (int32_t id = 0; id < known; ++id) {
    bytes[id] = tokenizer.TokenBytes(id);
    excluded[id] = tokenizer.IsSpecial(id);
  }
  auto exclude = [&](int32_t id) {
    if (id >= 0 && id < model_vocab_size) excluded[id] = true;
  };
  exclude(tokenizer.bos_id());
  for (int32_t id : tokenizer.eos_ids()) exclude(id);
  return std::make_shared<TokenVocabulary>(bytes, excluded);
}

}  // namespace iquest
