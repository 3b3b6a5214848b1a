// Helpers for the structured-output tests: constraints compiled over small vocabularies, whole
// texts checked against a matcher, and random texts drawn from a grammar.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "structured/constraint.h"

namespace iquest::testing {

// Every single byte as a token (ids 0..255), plus `extra` multi-byte tokens after them.
inline std::shared_ptr<const TokenVocabulary> ByteVocabulary(std::vector<std::string> extra = {}) {
  std::vector<std::string> bytes;
  for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
  for (std::string& e : extra) bytes.push_back(std::move(e));
  return std::make_shared<TokenVocabulary>(bytes, std::vector<bool>(bytes.size(), false));
}

inline absl::StatusOr<std::shared_ptr<GrammarMatcher>> Compile(
    ConstraintSpec::Kind kind, std::string text,
    std::shared_ptr<const TokenVocabulary> vocabulary = ByteVocabulary()) {
  ConstraintSpec spec;
  spec.kind = kind;
  spec.text = std::move(text);
  absl::StatusOr<Grammar> grammar = CompileConstraint(spec, GrammarLimits());
  if (!grammar.ok()) return grammar.status();
  return std::make_shared<GrammarMatcher>(*std::move(grammar), std::move(vocabulary));
}

// The whole of `text` is in the grammar's language.
inline bool Accepts(GrammarMatcher& matcher, std::string_view text) {
  GrammarState state = matcher.initial();
  return matcher.AdvanceBytes(state, text) && state.accepting();
}

// A random text of the language, token by token through the masks as the engine does: at an
// accepting state it stops with probability `stop_probability` (always when nothing may follow).
// Returns false if it ran past `max_tokens` or met a dead end.
inline bool Sample(GrammarMatcher& matcher, std::mt19937& rng, std::string* out,
                   double stop_probability = 0.1, int max_tokens = 4000) {
  GrammarState state = matcher.initial();
  out->clear();
  for (int step = 0; step < max_tokens; ++step) {
    if (state.complete()) return true;
    if (state.accepting() && std::uniform_real_distribution<>(0, 1)(rng) < stop_probability) {
      return true;
    }
    const std::shared_ptr<const TokenMask> mask = matcher.Mask(state);
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < matcher.vocabulary().vocab_size(); ++t) {
      if (MaskAllows(*mask, t)) allowed.push_back(t);
    }
    if (allowed.empty()) return state.accepting();
    const int32_t token =
        allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    if (!matcher.Advance(state, token)) return false;
    out->append(matcher.vocabulary().bytes(token));
  }
  return false;
}

}  // namespace iquest::testing
