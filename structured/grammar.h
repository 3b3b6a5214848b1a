// Grammar: a context-free grammar over bytes, the one form every structured-output constraint
// (GBNF text, regex, JSON schema, choice) is compiled to before it meets the vocabulary.
//
// Rules are lists of alternatives; an alternative is a flat run of elements ending in kEnd. An
// element matches one byte from a set, or refers to a rule. Multi-byte UTF-8 characters are
// sequences of byte sets (structured/utf8_ranges.h), so the matcher never decodes text.
//
// GrammarBuilder takes expressions (sequence, alternation, bounded or unbounded repetition, rule
// references) and flattens them, making helper rules for nested alternations and repetitions.
// Build() refuses left recursion (the matcher expands rules eagerly, so `a ::= a "x"` would never
// end) and grammars past the size limits, naming the rule.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace iquest {

// A set of byte values.
class ByteSet {
 public:
  static ByteSet Of(uint8_t byte) {
    ByteSet s;
    s.Add(byte);
    return s;
  }
  static ByteSet Range(uint8_t lo, uint8_t hi) {
    ByteSet s;
    for (int b = lo; b <= hi; ++b) s.Add(static_cast<uint8_t>(b));
    return s;
  }
  void Add(uint8_t byte) { words_[byte >> 6] |= uint64_t{1} << (byte & 63); }
  void AddAll(const ByteSet& other) {
    for (int i = 0; i < 4; ++i) words_[i] |= other.words_[i];
  }
  bool Contains(uint8_t byte) const { return (words_[byte >> 6] >> (byte & 63)) & 1; }
  bool empty() const { return (words_[0] | words_[1] | words_[2] | words_[3]) == 0; }
  bool operator==(const ByteSet&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const ByteSet& s) {
    return H::combine(std::move(h), s.words_);
  }

 private:
  std::array<uint64_t, 4> words_{};
};

struct GrammarElement {
  enum Kind : uint8_t { kBytes, kRule, kEnd };
  Kind kind = kEnd;
  int32_t value = 0;  // kBytes: index into Grammar::byte_sets; kRule: the rule id.
};

struct Grammar {
  std::vector<GrammarElement> elements;     // Every alternative, each ending in kEnd.
  std::vector<std::vector<int32_t>> rules;  // Rule id -> the start of each alternative.
  std::vector<ByteSet> byte_sets;
  int32_t root = 0;
};

// An expression over bytes, before flattening.
struct GrammarExpr {
  enum Kind : uint8_t { kBytes, kSeq, kAlt, kRule, kRepeat };
  Kind kind = kSeq;
  ByteSet bytes;           // kBytes.
  int32_t rule = 0;        // kRule.
  int32_t min_count = 0;   // kRepeat.
  int32_t max_count = -1;  // kRepeat; -1: unbounded.
  std::vector<GrammarExpr> children;

  static GrammarExpr Bytes(const ByteSet& bytes);
  static GrammarExpr Literal(std::string_view text);  // Its bytes in order.
  static GrammarExpr Empty() { return GrammarExpr(); }
  static GrammarExpr Seq(std::vector<GrammarExpr> parts);
  static GrammarExpr Alt(std::vector<GrammarExpr> choices);
  static GrammarExpr Ref(int32_t rule);
  static GrammarExpr Repeat(GrammarExpr body, int32_t min_count, int32_t max_count);
  static GrammarExpr Optional(GrammarExpr body) { return Repeat(std::move(body), 0, 1); }
};

struct GrammarLimits {
  int64_t max_elements = 1 << 21;
  int32_t max_rules = 1 << 18;
  int32_t max_repeat = 10000;  // The largest finite bound of a repetition, {m,n}.
  // Wall-clock budget of the whole compilation (GrammarBuilder::CheckTime); infinite: none.
  absl::Time deadline = absl::InfiniteFuture();
};

class GrammarBuilder {
 public:
  explicit GrammarBuilder(const GrammarLimits& limits) : limits_(limits) {}

  // A new rule, defined later by Define (a rule never defined is an error at Build).
  int32_t Declare(std::string name);
  // Sets rule `id`'s body; a second definition is an error at Build.
  void Define(int32_t id, GrammarExpr body);
  // Declare + Define.
  int32_t Add(std::string name, GrammarExpr body);
  int32_t Find(std::string_view name) const;  // -1 when absent.
  const std::string& name(int32_t id) const { return names_[id]; }
  int32_t num_rules() const { return static_cast<int32_t>(names_.size()); }

  // kDeadlineExceeded once the compile deadline has passed; the converters call it in loops.
  absl::Status CheckTime() const;
  const GrammarLimits& limits() const { return limits_; }

  absl::StatusOr<Grammar> Build(int32_t root);

 private:
  absl::Status Flatten(int32_t rule);
  // Appends `expr` to `out` as elements of one alternative, making helper rules as needed.
  absl::Status AppendSeq(const GrammarExpr& expr, const std::string& owner,
                         std::vector<GrammarElement>& out);
  absl::StatusOr<int32_t> HelperRule(const std::string& owner, GrammarExpr body);
  int32_t ByteSetIndex(const ByteSet& bytes);
  absl::Status CheckLeftRecursion() const;

  GrammarLimits limits_;
  std::vector<std::string> names_;
  absl::flat_hash_map<std::string, int32_t> ids_;  // Name -> its first rule.
  absl::flat_hash_map<ByteSet, int32_t> byte_set_ids_;
  std::vector<GrammarExpr> bodies_;
  std::vector<bool> defined_;
  std::vector<std::vector<std::vector<GrammarElement>>> alternatives_;  // Flattened, per rule.
  std::vector<ByteSet> byte_sets_;
  int64_t num_elements_ = 0;
  int32_t helper_counter_ = 0;
};

}  // namespace iquest
