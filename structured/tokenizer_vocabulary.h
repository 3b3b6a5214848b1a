// The tokenizer's vocabulary as the grammar matcher sees it. A library of its own
// (iquest_structured_vocab) so that the grammar engine itself depends on no tokenizer.
#pragma once

#include <cstdint>
#include <memory>

#include "model/tokenizer/tokenizer.h"
#include "structured/token_vocabulary.h"

namespace iquest {

// Each id's bytes (Tokenizer::TokenBytes), `model_vocab_size` entries; control tokens (special,
// BOS, EOS) and the model's padding ids beyond the tokenizer are left out.
std::shared_ptr<const TokenVocabulary> BuildTokenVocabulary(const Tokenizer& tokenizer,
                                                            int64_t model_vocab_size);

}  // namespace iquest
