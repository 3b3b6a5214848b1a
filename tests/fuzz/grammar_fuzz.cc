// libFuzzer: arbitrary bytes as a structured-output constraint (the first byte picks JSON
// schema, regex or GBNF; the rest is its text), compiled under small limits, then a walk of a
// few masks and advances over a byte vocabulary with a few multi-byte tokens. Any input must end
// in a matcher or an error: no crash, no leak, no unbounded expansion.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "structured/constraint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  iquest::ConstraintSpec spec;
  static constexpr iquest::ConstraintSpec::Kind kKinds[] = {iquest::ConstraintSpec::kJsonSchema,
                                                            iquest::ConstraintSpec::kRegex,
                                                            iquest::ConstraintSpec::kGrammar};
  spec.kind = kKinds[data[0] % 3];
  spec.text.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  iquest::GrammarLimits limits;
  limits.max_elements = 1 << 16;
  limits.max_rules = 1 << 12;
  limits.max_repeat = 200;
  auto grammar = iquest::CompileConstraint(spec, limits);
  if (!grammar.ok()) return 0;
  static const auto vocabulary = [] {
    std::vector<std::string> bytes;
    for (int b = 0; b < 256; ++b) bytes.push_back(std::string(1, static_cast<char>(b)));
    for (const char* t : {"{\"", "\":", "\",", "true", "null", "ab", "é", "  "}) bytes.push_back(t);
    return std::make_shared<iquest::TokenVocabulary>(bytes, std::vector<bool>(bytes.size(), false));
  }();
  iquest::GrammarMatcher matcher(*std::move(grammar), vocabulary);
  iquest::GrammarState state = matcher.initial();
  // Follow the lowest allowed token a few steps: masks and advances on the fuzzed grammar.
  for (int step = 0; step < 16 && !state.complete(); ++step) {
    const auto mask = matcher.Mask(state);
    int32_t next = -1;
    for (int32_t t = 0; t < vocabulary->vocab_size() && next < 0; ++t) {
      if (iquest::MaskAllows(*mask, t)) next = t;
    }
    if (next < 0 || !matcher.Advance(state, next)) break;
  }
  return 0;
}
