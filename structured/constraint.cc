#include "structured/constraint.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "structured/gbnf.h"
#include "structured/json_schema.h"
#include "structured/regex.h"

namespace iquest {

const char* ConstraintKindName(ConstraintSpec::Kind kind) {
  switch (kind) {
    case ConstraintSpec::kJsonSchema:
      return "json_schema";
    case ConstraintSpec::kJsonObject:
      return "json_object";
    case ConstraintSpec::kRegex:
      return "regex";
    case ConstraintSpec::kGrammar:
      return "grammar";
    case ConstraintSpec::kChoice:
      return "choice";
  }
  return "unknown";
}

std::string ConstraintSpec::CacheKey() const {
  std::string key = ConstraintKindName(kind);
  key.push_back('\0');
  key += text;
  for (const std::string& c : choices)
    absl::StrAppend(&key, absl::string_view("\0", 1), c.size(), ":", c);
  return key;
}

absl::StatusOr<Grammar> CompileConstraint(const ConstraintSpec& spec, const GrammarLimits& limits) {
  GrammarBuilder builder(limits);
  int32_t root = -1;
  switch (spec.kind) {
    case ConstraintSpec::kJsonSchema: {
      const nlohmann::ordered_json schema =
          nlohmann::ordered_json::parse(spec.text, nullptr, /*allow_exceptions=*/false);
      if (schema.is_discarded()) return absl::InvalidArgumentError("json_schema is not valid JSON");
      ASSIGN_OR_RETURN(root, JsonSchemaToGrammar(schema, builder));
      break;
    }
    case ConstraintSpec::kJsonObject: {
      ASSIGN_OR_RETURN(root, JsonObjectGrammar(builder));
      break;
    }
    case ConstraintSpec::kRegex: {
      ASSIGN_OR_RETURN(GrammarExpr e, RegexToExpr(spec.text, builder));
      root = builder.Add("root", std::move(e));
      break;
    }
    case ConstraintSpec::kGrammar: {
      ASSIGN_OR_RETURN(root, ParseGbnf(spec.text, builder));
      break;
    }
    case ConstraintSpec::kChoice: {
      if (spec.choices.empty())
        return absl::InvalidArgumentError("choice needs at least one string");
      std::vector<GrammarExpr> choices;
      for (const std::string& c : spec.choices) choices.push_back(GrammarExpr::Literal(c));
      root = builder.Add("root", GrammarExpr::Alt(std::move(choices)));
      break;
    }
  }
  return builder.Build(root);
}

GrammarCache::GrammarCache(std::shared_ptr<const TokenVocabulary> vocabulary, size_t capacity,
                           absl::Duration compile_timeout)
    : vocabulary_(std::move(vocabulary)), capacity_(capacity), compile_timeout_(compile_timeout) {}

absl::StatusOr<std::shared_ptr<GrammarMatcher>> GrammarCache::Get(const ConstraintSpec& spec) {
  const std::string key = spec.CacheKey();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.num_hits;
      return it->second->second;
    }
  }
  const absl::Time start = absl::Now();
  GrammarLimits limits;
  limits.deadline = start + compile_timeout_;
  absl::StatusOr<Grammar> grammar = CompileConstraint(spec, limits);
  std::shared_ptr<GrammarMatcher> matcher;
  absl::Status status = grammar.status();
  if (grammar.ok()) {
    matcher = std::make_shared<GrammarMatcher>(*std::move(grammar), vocabulary_);
    if (matcher->initial().key[1] == 0 && !matcher->initial().accepting()) {
      status = absl::InvalidArgumentError("the constraint matches no text");
    } else if (matcher->initial().complete()) {
      // A request generates at least one token, and nothing may follow the empty text.
      status = absl::InvalidArgumentError("the constraint allows only the empty text");
    } else if (absl::Now() > limits.deadline) {
      status = absl::DeadlineExceededError("grammar compilation exceeded its time limit");
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.compile_seconds += seconds;
  if (!status.ok()) {
    ++stats_.num_failed;
    std::string message(status.message());
    if (status.code() == absl::StatusCode::kDeadlineExceeded) {
      absl::StrAppend(&message, " (", absl::ToInt64Milliseconds(compile_timeout_),
                      " ms, --grammar-compile-timeout-ms)");
    }
    return absl::InvalidArgumentError(message);
  }
  ++stats_.num_compiled;
  auto it = index_.find(key);
  if (it != index_.end()) return it->second->second;  // Compiled meanwhile by another thread.
  lru_.emplace_front(key, matcher);
  index_[key] = lru_.begin();
  while (lru_.size() > capacity_) {
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  return matcher;
}

GrammarCacheStats GrammarCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace iquest
