#include "structured/grammar.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace iquest {

GrammarExpr GrammarExpr::Bytes(const ByteSet& bytes) {
  GrammarExpr e;
  e.kind = kBytes;
  e.bytes = bytes;
  return e;
}

GrammarExpr GrammarExpr::Literal(std::string_view text) {
  GrammarExpr e;
  for (char c : text) e.children.push_back(Bytes(ByteSet::Of(static_cast<uint8_t>(c))));
  return e;
}

GrammarExpr GrammarExpr::Seq(std::vector<GrammarExpr> parts) {
  if (parts.size() == 1) return std::move(parts[0]);
  GrammarExpr e;
  e.children = std::move(parts);
  return e;
}

GrammarExpr GrammarExpr::Alt(std::vector<GrammarExpr> choices) {
  if (choices.size() == 1) return std::move(choices[0]);
  GrammarExpr e;
  e.kind = kAlt;
  e.children = std::move(choices);
  return e;
}

GrammarExpr GrammarExpr::Ref(int32_t rule) {
  GrammarExpr e;
  e.kind = kRule;
  e.rule = rule;
  return e;
}

GrammarExpr GrammarExpr::Repeat(GrammarExpr body, int32_t min_count, int32_t max_count) {
  GrammarExpr e;
  e.kind = kRepeat;
  e.min_count = min_count;
  e.max_count = max_count;
  e.children.push_back(std::move(body));
  return e;
}

int32_t GrammarBuilder::Declare(std::string name) {
  ids_.emplace(name, static_cast<int32_t>(names_.size()));
  names_.push_back(std::move(name));
  bodies_.emplace_back();
  defined_.push_back(false);
  return static_cast<int32_t>(names_.size()) - 1;
}

void GrammarBuilder::Define(int32_t id, GrammarExpr body) {
  if (defined_[id]) {
    // Reported by Build: a placeholder that cannot be a real body.
    bodies_[id].kind = GrammarExpr::kRepeat;
    bodies_[id].min_count = -1;
    return;
  }
  bodies_[id] = std::move(body);
  defined_[id] = true;
}

int32_t GrammarBuilder::Add(std::string name, GrammarExpr body) {
  const int32_t id = Declare(std::move(name));
  Define(id, std::move(body));
  return id;
}

int32_t GrammarBuilder::Find(std::string_view name) const {
  auto it = ids_.find(absl::string_view(name.data(), name.size()));
  return it == ids_.end() ? -1 : it->second;
}

absl::Status GrammarBuilder::CheckTime() const {
  if (limits_.deadline != absl::InfiniteFuture() && absl::Now() > limits_.deadline) {
    return absl::DeadlineExceededError("grammar compilation exceeded its time limit");
  }
  return absl::OkStatus();
}

int32_t GrammarBuilder::ByteSetIndex(const ByteSet& bytes) {
  auto [it, added] = byte_set_ids_.try_emplace(bytes, static_cast<int32_t>(byte_sets_.size()));
  if (added) byte_sets_.push_back(bytes);
  return it->second;
}

absl::StatusOr<int32_t> GrammarBuilder::HelperRule(const std::string& owner, GrammarExpr body) {
  if (num_rules() >= limits_.max_rules) {
    return absl::ResourceExhaustedError(
        absl::StrCat("grammar has more than ", limits_.max_rules, " rules"));
  }
  return Add(absl::StrCat(owner, "-", ++helper_counter_), std::move(body));
}

absl::Status GrammarBuilder::AppendSeq(const GrammarExpr& expr, const std::string& owner,
                                       std::vector<GrammarElement>& out) {
  switch (expr.kind) {
    case GrammarExpr::kBytes:
      if (expr.bytes.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("rule '", owner, "' has an empty character class"));
      }
      out.push_back({GrammarElement::kBytes, ByteSetIndex(expr.bytes)});
      return absl::OkStatus();
    case GrammarExpr::kRule:
      if (expr.rule < 0 || expr.rule >= num_rules()) {
        return absl::InvalidArgumentError(absl::StrCat("rule '", owner, "' refers to no rule"));
      }
      out.push_back({GrammarElement::kRule, expr.rule});
      return absl::OkStatus();
    case GrammarExpr::kSeq:
      for (const GrammarExpr& part : expr.children) RETURN_IF_ERROR(AppendSeq(part, owner, out));
      return absl::OkStatus();
    case GrammarExpr::kAlt: {
      ASSIGN_OR_RETURN(const int32_t helper, HelperRule(owner, expr));
      out.push_back({GrammarElement::kRule, helper});
      return absl::OkStatus();
    }
    case GrammarExpr::kRepeat:
      break;
  }
  const int32_t min_count = expr.min_count;
  const int32_t max_count = expr.max_count;
  if (min_count < 0 || (max_count >= 0 && max_count < min_count)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule '", owner, "' has a repetition {", min_count, ",", max_count, "}"));
  }
  if (std::max(min_count, max_count) > limits_.max_repeat) {
    return absl::InvalidArgumentError(
        absl::StrCat("rule '", owner, "' repeats more than ", limits_.max_repeat, " times"));
  }
  const GrammarExpr& body = expr.children[0];
  for (int32_t i = 0; i < min_count; ++i) RETURN_IF_ERROR(AppendSeq(body, owner, out));
  if (max_count == min_count) return absl::OkStatus();
  if (max_count < 0) {
    // star ::= body star | (empty); the reference is last, so the matcher's tail call keeps the
    // stack flat however many times it repeats.
    const int32_t star = Declare(absl::StrCat(owner, "-", ++helper_counter_));
    Define(star, GrammarExpr::Alt(
                     {GrammarExpr::Seq({body, GrammarExpr::Ref(star)}), GrammarExpr::Empty()}));
    out.push_back({GrammarElement::kRule, star});
    return absl::OkStatus();
  }
  // opt_k ::= body opt_{k-1} | (empty), one rule per optional copy.
  int32_t next = -1;
  for (int32_t k = 0; k < max_count - min_count; ++k) {
    RETURN_IF_ERROR(CheckTime());
    GrammarExpr taken = next < 0 ? body : GrammarExpr::Seq({body, GrammarExpr::Ref(next)});
    ASSIGN_OR_RETURN(next,
                     HelperRule(owner, GrammarExpr::Alt({std::move(taken), GrammarExpr::Empty()})));
  }
  out.push_back({GrammarElement::kRule, next});
  return absl::OkStatus();
}

absl::Status GrammarBuilder::Flatten(int32_t rule) {
  const GrammarExpr body = bodies_[rule];  // A copy: helper rules grow bodies_.
  const std::string owner = names_[rule];
  std::vector<std::vector<GrammarElement>> alts;
  auto add = [&](const GrammarExpr& e) -> absl::Status {
    std::vector<GrammarElement> seq;
    RETURN_IF_ERROR(AppendSeq(e, owner, seq));
    num_elements_ += static_cast<int64_t>(seq.size()) + 1;
    alts.push_back(std::move(seq));
    return absl::OkStatus();
  };
  if (body.kind == GrammarExpr::kAlt) {
    for (const GrammarExpr& choice : body.children) RETURN_IF_ERROR(add(choice));
  } else {
    RETURN_IF_ERROR(add(body));
  }
  if (num_elements_ > limits_.max_elements) {
    return absl::ResourceExhaustedError(
        absl::StrCat("grammar has more than ", limits_.max_elements, " elements"));
  }
  alternatives_.resize(names_.size());
  alternatives_[rule] = std::move(alts);
  return absl::OkStatus();
}

absl::Status GrammarBuilder::CheckLeftRecursion() const {
  const size_t n = alternatives_.size();
  std::vector<bool> nullable(n, false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (const auto& alt : alternatives_[r]) {
        const bool all = std::all_of(alt.begin(), alt.end(), [&](const GrammarElement& e) {
          return e.kind == GrammarElement::kRule && nullable[e.value];
        });
        if (all) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  // Rule -> rules that can start it (everything before them nullable). A cycle is left
  // recursion.
  std::vector<std::vector<int32_t>> starts(n);
  for (size_t r = 0; r < n; ++r) {
    for (const auto& alt : alternatives_[r]) {
      for (const GrammarElement& e : alt) {
        if (e.kind != GrammarElement::kRule) break;
        starts[r].push_back(e.value);
        if (!nullable[e.value]) break;
      }
    }
  }
  std::vector<uint8_t> color(n, 0);  // 0 new, 1 on the path, 2 done.
  std::vector<std::pair<int32_t, size_t>> path;
  for (size_t first = 0; first < n; ++first) {
    if (color[first]) continue;
    path.push_back({static_cast<int32_t>(first), 0});
    color[first] = 1;
    while (!path.empty()) {
      auto& [r, i] = path.back();
      if (i == starts[r].size()) {
        color[r] = 2;
        path.pop_back();
        continue;
      }
      const int32_t next = starts[r][i++];
      if (color[next] == 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("grammar rule '", names_[next],
                         "' is left-recursive (it can start with itself); rewrite it with "
                         "repetition, e.g. a ::= b (\"x\" b)*"));
      }
      if (color[next] == 0) {
        color[next] = 1;
        path.push_back({next, 0});
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Grammar> GrammarBuilder::Build(int32_t root) {
  for (int32_t r = 0; r < num_rules(); ++r) {
    if (!defined_[r]) {
      return absl::InvalidArgumentError(
          absl::StrCat("grammar rule '", names_[r], "' is undefined"));
    }
    if (bodies_[r].kind == GrammarExpr::kRepeat && bodies_[r].min_count < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("grammar rule '", names_[r], "' is defined twice"));
    }
  }
  for (int32_t r = 0; r < num_rules(); ++r) {  // num_rules grows as helpers are made.
    RETURN_IF_ERROR(CheckTime());
    RETURN_IF_ERROR(Flatten(r));
  }
  RETURN_IF_ERROR(CheckLeftRecursion());
  Grammar g;
  g.root = root;
  g.byte_sets = byte_sets_;
  g.rules.resize(alternatives_.size());
  g.elements.reserve(static_cast<size_t>(num_elements_));
  for (size_t r = 0; r < alternatives_.size(); ++r) {
    for (const auto& alt : alternatives_[r]) {
      g.rules[r].push_back(static_cast<int32_t>(g.elements.size()));
      g.elements.insert(g.elements.end(), alt.begin(), alt.end());
      g.elements.push_back({GrammarElement::kEnd, 0});
    }
  }
  return g;
}

}  // namespace iquest
