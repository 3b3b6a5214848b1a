// Structured-output constraints as the engine sees them: a spec (what the request asked for),
// compiled once per distinct spec into a GrammarMatcher over the server's vocabulary and kept in
// a small LRU cache keyed by the spec's text, so requests with the same schema share the
// compiled grammar, its DFA and its masks.
//
// Compilation runs on the caller's thread (the request handler, never the engine thread), under
// a size limit and a wall-clock limit; any failure is kInvalidArgument for that one request.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "structured/grammar.h"
#include "structured/grammar_matcher.h"
#include "structured/token_vocabulary.h"

namespace iquest {

struct ConstraintSpec {
  enum Kind : uint8_t { kJsonSchema, kJsonObject, kRegex, kGrammar, kChoice };
  Kind kind = kJsonObject;
  std::string text;                  // The schema (JSON text), regex or GBNF grammar.
  std::vector<std::string> choices;  // kChoice: the output is exactly one of these.

  std::string CacheKey() const;
};

const char* ConstraintKindName(ConstraintSpec::Kind kind);

// Spec -> grammar. `limits.deadline` bounds the time.
absl::StatusOr<Grammar> CompileConstraint(const ConstraintSpec& spec, const GrammarLimits& limits);

struct GrammarCacheStats {
  int64_t num_compiled = 0;
  int64_t num_hits = 0;
  int64_t num_failed = 0;
  double compile_seconds = 0;  // Total over num_compiled + num_failed.
};

class GrammarCache {
 public:
  GrammarCache(std::shared_ptr<const TokenVocabulary> vocabulary, size_t capacity,
               absl::Duration compile_timeout);

  // The matcher for `spec`, compiled now or taken from the cache. Thread-safe; a compile runs
  // without the cache's lock held. Errors are kInvalidArgument.
  absl::StatusOr<std::shared_ptr<GrammarMatcher>> Get(const ConstraintSpec& spec);

  GrammarCacheStats stats() const;

 private:
  const std::shared_ptr<const TokenVocabulary> vocabulary_;
  const size_t capacity_;
  const absl::Duration compile_timeout_;
  mutable std::mutex mu_;
  // Most recently used first.
  std::list<std::pair<std::string, std::shared_ptr<GrammarMatcher>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
  GrammarCacheStats stats_;
};

}  // namespace iquest
