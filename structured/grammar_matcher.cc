#include "structured/grammar_matcher.h"

#include <algorithm>

#include "common/check.h"

namespace iquest {
namespace {

// The grammar plus one alternative [root, end] that the initial stack starts from.
Grammar WithRootAlternative(Grammar g) {
  g.elements.push_back({GrammarElement::kRule, g.root});
  g.elements.push_back({GrammarElement::kEnd, 0});
  return g;
}

}  // namespace

GrammarMatcher::GrammarMatcher(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocabulary)
    : grammar_(WithRootAlternative(std::move(grammar))),
      vocabulary_(std::move(vocabulary)),
      root_position_(static_cast<int32_t>(grammar_.elements.size()) - 2) {
  std::vector<std::vector<int32_t>> stacks;
  bool accepting = false;
  Expand({root_position_}, stacks, accepting);
  initial_ = MakeState(std::move(stacks), accepting);
  levels_.resize(static_cast<size_t>(vocabulary_->max_depth()) + 1);
}

void GrammarMatcher::Expand(std::vector<int32_t> stack, std::vector<std::vector<int32_t>>& out,
                            bool& accepting) const {
  // Left recursion is refused at build time, so this ends; the work bound only caps grammars
  // whose alternatives multiply (each copy is still a valid stack, and dropping some is sound).
  std::vector<std::vector<int32_t>> work;
  work.push_back(std::move(stack));
  int64_t budget = 1 << 16;
  while (!work.empty() && --budget > 0) {
    std::vector<int32_t> s = std::move(work.back());
    work.pop_back();
    if (s.empty()) {
      accepting = true;
      continue;
    }
    const int32_t p = s.back();
    const GrammarElement& e = grammar_.elements[p];
    switch (e.kind) {
      case GrammarElement::kBytes:
        if (out.size() < kMaxStacks) out.push_back(std::move(s));
        break;
      case GrammarElement::kEnd:
        s.pop_back();
        work.push_back(std::move(s));
        break;
      case GrammarElement::kRule: {
        s.pop_back();
        // A tail call returns straight to the caller's caller: repetitions stay flat.
        if (grammar_.elements[p + 1].kind != GrammarElement::kEnd) s.push_back(p + 1);
        if (static_cast<int32_t>(s.size()) >= kMaxStackDepth) break;
        const std::vector<int32_t>& alts = grammar_.rules[e.value];
        for (size_t a = alts.size(); a-- > 0;) {
          std::vector<int32_t> next = s;
          next.push_back(alts[a]);
          work.push_back(std::move(next));
        }
        break;
      }
    }
  }
}

GrammarState GrammarMatcher::MakeState(std::vector<std::vector<int32_t>> stacks,
                                       bool accepting) const {
  std::sort(stacks.begin(), stacks.end());
  stacks.erase(std::unique(stacks.begin(), stacks.end()), stacks.end());
  GrammarState state;
  state.key.push_back(accepting ? 1 : 0);
  state.key.push_back(static_cast<int32_t>(stacks.size()));
  for (const auto& s : stacks) {
    state.key.push_back(static_cast<int32_t>(s.size()));
    state.key.insert(state.key.end(), s.begin(), s.end());
  }
  return state;
}

GrammarState GrammarMatcher::Step(const GrammarState& state, uint8_t byte) const {
  std::vector<std::vector<int32_t>> out;
  bool accepting = false;
  const int32_t num_stacks = state.key[1];
  size_t at = 2;
  for (int32_t i = 0; i < num_stacks; ++i) {
    const size_t depth = static_cast<size_t>(state.key[at]);
    const int32_t* begin = state.key.data() + at + 1;
    at += depth + 1;
    const GrammarElement& top = grammar_.elements[begin[depth - 1]];
    if (!grammar_.byte_sets[top.value].Contains(byte)) continue;
    std::vector<int32_t> s(begin, begin + depth);
    ++s.back();
    Expand(std::move(s), out, accepting);
  }
  if (out.empty() && !accepting) return GrammarState();
  return MakeState(std::move(out), accepting);
}

void GrammarMatcher::FlushIfFull() {
  if (static_cast<int32_t>(states_.size()) <= kMaxStates) return;
  states_.clear();
  ids_.clear();
  transitions_.clear();
  masks_.clear();
  ++stats_.num_flushes;
}

int32_t GrammarMatcher::Intern(const GrammarState& state) {
  auto it = ids_.find(state.key);
  if (it != ids_.end()) return it->second;
  if (static_cast<int32_t>(states_.size()) >= kHardMaxStates) return kDead;
  const int32_t id = static_cast<int32_t>(states_.size());
  states_.push_back(state);
  ids_.emplace(state.key, id);
  transitions_.resize(transitions_.size() + 256, kUnknown);
  return id;
}

int32_t GrammarMatcher::Next(int32_t id, uint8_t byte) {
  int32_t& slot = transitions_[static_cast<size_t>(id) * 256 + byte];
  if (slot != kUnknown) return slot;
  const GrammarState next = Step(states_[id], byte);
  const int32_t result = next.key.empty() ? kDead : Intern(next);
  // Intern may have grown transitions_, so the slot is found again.
  transitions_[static_cast<size_t>(id) * 256 + byte] = result;
  return result;
}

void GrammarMatcher::Walk(int32_t id, TokenMask& mask) {
  const TokenVocabulary& v = *vocabulary_;
  const std::vector<uint8_t>& bytes = v.node_byte();
  const std::vector<int32_t>& depth = v.node_depth();
  const std::vector<int32_t>& subtree_end = v.subtree_end();
  const std::vector<int32_t>& token_begin = v.token_begin();
  const std::vector<int32_t>& tokens = v.node_tokens();
  const int32_t num_nodes = v.num_nodes();
  levels_[0] = id;
  for (int32_t i = 0; i < num_nodes;) {
    const int32_t from = levels_[static_cast<size_t>(depth[i]) - 1];
    int32_t to = transitions_[static_cast<size_t>(from) * 256 + bytes[i]];
    if (to == kUnknown) to = Next(from, bytes[i]);
    if (to < 0) {
      i = subtree_end[i];
      continue;
    }
    levels_[static_cast<size_t>(depth[i])] = to;
    for (int32_t k = token_begin[i]; k < token_begin[i + 1]; ++k) {
      mask[static_cast<size_t>(tokens[k]) >> 6] |= uint64_t{1} << (tokens[k] & 63);
    }
    ++i;
  }
}

std::shared_ptr<const TokenMask> GrammarMatcher::Mask(const GrammarState& state) {
  std::lock_guard<std::mutex> lock(mu_);
  FlushIfFull();
  const int32_t id = Intern(state);
  CHECK_GE(id, 0) << "a flush leaves room for the state being asked about";
  auto it = masks_.find(id);
  if (it != masks_.end()) {
    ++stats_.num_mask_cache_hits;
    return it->second;
  }
  auto mask =
      std::make_shared<TokenMask>((static_cast<size_t>(vocabulary_->vocab_size()) + 63) / 64, 0);
  Walk(id, *mask);
  ++stats_.num_masks_computed;
  if (masks_.size() >= kMaxMasks) masks_.clear();
  masks_.emplace(id, mask);
  return mask;
}

bool GrammarMatcher::AdvanceBytes(GrammarState& state, std::string_view bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  FlushIfFull();
  int32_t id = Intern(state);
  CHECK_GE(id, 0);
  for (char c : bytes) {
    id = Next(id, static_cast<uint8_t>(c));
    if (id < 0) return false;
  }
  state = states_[id];
  return true;
}

bool GrammarMatcher::Advance(GrammarState& state, int32_t token) {
  if (token < 0 || token >= vocabulary_->vocab_size() || !vocabulary_->in_trie(token)) return false;
  return AdvanceBytes(state, vocabulary_->bytes(token));
}

GrammarMatcherStats GrammarMatcher::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  GrammarMatcherStats s = stats_;
  s.num_states = static_cast<int64_t>(states_.size());
  return s;
}

}  // namespace iquest
