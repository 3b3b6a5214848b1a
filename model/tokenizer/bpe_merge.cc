// BPE merge loops. Both validate candidates lazily: a candidate (rank, left) is applied only if
// `left` is still alive and its pair with the current right neighbour still has that rank.
#include "model/tokenizer/bpe_merge.h"

#include <algorithm>
#include <array>
#include <functional>
#include <queue>

namespace iquest {
namespace {

using MinHeap = std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>>;

uint64_t HeapKey(int32_t rank, int32_t left) {
  return (static_cast<uint64_t>(rank) << 32) | static_cast<uint32_t>(left);
}

const BpeMerge* Find(const BpeMergeMap& merges, const std::vector<BpeSymbol>& sym, int32_t left) {
  const int32_t right = sym[left].next;
  if (right < 0 || sym[left].id < 0 || sym[right].id < 0) return nullptr;
  auto it = merges.find(BpePairKey(sym[left].id, sym[right].id));
  return it == merges.end() ? nullptr : &it->second;
}

// Merges `left` with its right neighbour.
void Merge(std::vector<BpeSymbol>& sym, int32_t left, int32_t merged_id) {
  const int32_t right = sym[left].next;
  sym[left].id = merged_id;
  sym[left].len += sym[right].len;
  sym[right].len = 0;
  sym[left].next = sym[right].next;
  if (sym[left].next >= 0) sym[sym[left].next].prev = left;
}

// State of MergeByRank. Candidates above the rank being applied wait in per-rank buckets;
// those at or below it (merge lists need not be ordered) go to `late_`, a (rank, position) heap
// interleaved with the current bucket. A bucket holds sorted position ranges that may be loose:
// a range is walked along the live symbols and every pair is validated, so covering extra
// positions costs a check, never a wrong merge, and a run of equal pairs (1 MB of spaces) is one
// range instead of a million entries. Positions touched by a merge are only noted (`dirty_`) and
// bucketed once the rank is done, so each gets one lookup for its final pair.
class RankMerger {
 public:
  RankMerger(const BpeMergeMap& merges, std::vector<BpeSymbol>& sym) : merges_(merges), sym_(sym) {
    memo_.fill({~uint64_t{0}, nullptr});
  }

  void Run() {
    const auto n = static_cast<int32_t>(sym_.size());
    for (int32_t i = 0; i + 1 < n; ++i) {
      // Inside a run of one repeated pair, extend the range AddCandidate just made or grew.
      if (i > 0 && sym_[i].id == sym_[i - 1].id && sym_[i + 1].id == sym_[i].id && last_ >= 0) {
        buckets_[last_].ranges.back().second = i + 1;
        continue;
      }
      AddCandidate(i);
    }
    while (!ranks_.empty()) {
      current_ = ranks_.top();
      ranks_.pop();
      ApplyRank();
      if (!std::is_sorted(dirty_.begin(), dirty_.end())) std::sort(dirty_.begin(), dirty_.end());
      for (const int32_t left : dirty_) {
        if (sym_[left].len > 0) AddCandidate(left);
      }
      dirty_.clear();
    }
  }

 private:
  // Positions [first, second) of a bucket.
  using Range = std::pair<int32_t, int32_t>;
  struct Bucket {
    int32_t rank;
    std::vector<Range> ranges;
  };
  // A candidate this close after a bucket's last range extends it rather than starting a new one.
  static constexpr int32_t kMaxRangeGap = 8;

  // Long words repeat the same few pairs: a small direct-mapped memo in front of the hash map.
  const BpeMerge* Lookup(int32_t left) {
    const int32_t right = sym_[left].next;
    if (right < 0) return nullptr;
    const uint64_t pair = BpePairKey(sym_[left].id, sym_[right].id);
    auto& slot = memo_[(pair * 0x9E3779B97F4A7C15u) >> 58];
    if (slot.first != pair) slot = {pair, Find(merges_, sym_, left)};
    return slot.second;
  }

  void AddCandidate(int32_t left) {
    const BpeMerge* m = Lookup(left);
    last_ = -1;
    if (m == nullptr || m->rank <= current_) return;  // <= current_: only at the start (-1).
    int32_t& index = bucket_of_rank_[m->rank];
    if (index < 0) {
      index = static_cast<int32_t>(num_buckets_++);
      if (buckets_.size() < num_buckets_) buckets_.emplace_back();
      buckets_[index].rank = m->rank;
      buckets_[index].ranges.clear();
      ranks_.push(m->rank);
    }
    last_ = index;
    std::vector<Range>& ranges = buckets_[index].ranges;
    if (!ranges.empty() && left >= ranges.back().first &&
        left - ranges.back().second < kMaxRangeGap) {
      ranges.back().second = std::max(ranges.back().second, left + 1);
    } else {
      ranges.emplace_back(left, left + 1);
    }
  }

  void Touched(int32_t left) {
    const BpeMerge* m = Lookup(left);
    if (m == nullptr) return;
    if (m->rank <= current_) {
      late_.push(HeapKey(m->rank, left));
    } else {
      dirty_.push_back(left);
    }
  }

  void Apply(int32_t rank, int32_t left) {
    if (sym_[left].len == 0) return;
    const BpeMerge* m = Lookup(left);
    if (m == nullptr || m->rank != rank) return;  // Stale: a neighbour changed.
    Merge(sym_, left, m->merged_id);
    if (sym_[left].prev >= 0) Touched(sym_[left].prev);
    Touched(left);
  }

  // Sorts a bucket's ranges and fuses overlapping ones (buckets filled over several ranks).
  static void Normalize(std::vector<Range>& ranges) {
    if (std::is_sorted(ranges.begin(), ranges.end())) {
      bool disjoint = true;
      for (size_t i = 1; i < ranges.size() && disjoint; ++i) {
        disjoint = ranges[i - 1].second <= ranges[i].first;
      }
      if (disjoint) return;
    }
    std::sort(ranges.begin(), ranges.end());
    size_t out = 0;
    for (size_t i = 1; i < ranges.size(); ++i) {
      if (ranges[i].first <= ranges[out].second) {
        ranges[out].second = std::max(ranges[out].second, ranges[i].second);
      } else {
        ranges[++out] = ranges[i];
      }
    }
    ranges.resize(out + 1);
  }

  // Applies late candidates ordered before (current_, before), or all of them when before < 0.
  void DrainLate(int32_t before) {
    while (!late_.empty() && (before < 0 || late_.top() < HeapKey(current_, before))) {
      const uint64_t top = late_.top();
      late_.pop();
      Apply(static_cast<int32_t>(top >> 32), static_cast<int32_t>(top & 0xFFFFFFFFu));
    }
  }

  void ApplyRank() {
    // Merges only add to other buckets, so this one is stable; `buckets_` may grow, hence `b`.
    const size_t b = bucket_of_rank_[current_];
    Normalize(buckets_[b].ranges);
    for (size_t r = 0; r < buckets_[b].ranges.size(); ++r) {
      const auto [first, end] = buckets_[b].ranges[r];
      // Live symbols form a list in index order, and a dead symbol's `next` still points at or
      // before the next live one, so this walk visits every live position in [first, end).
      for (int32_t pos = first; pos >= 0 && pos < end; pos = sym_[pos].next) {
        DrainLate(pos);
        Apply(current_, pos);
      }
    }
    DrainLate(-1);
  }

 public:
  ~RankMerger() {
    for (size_t b = 0; b < num_buckets_; ++b) bucket_of_rank_[buckets_[b].rank] = -1;
  }

  // Per-thread scratch kept between words (fresh pages cost more than the merging);
  // bucket_of_rank_[rank] is an index into buckets_ or -1, reset entry by entry afterwards.
  static void Reserve(size_t num_ranks) {
    if (bucket_of_rank_.size() < num_ranks) bucket_of_rank_.resize(num_ranks, -1);
  }

 private:
  static thread_local std::vector<Bucket> buckets_;
  static thread_local std::vector<int32_t> bucket_of_rank_;
  static thread_local std::vector<int32_t> dirty_;

  const BpeMergeMap& merges_;
  std::vector<BpeSymbol>& sym_;
  std::array<std::pair<uint64_t, const BpeMerge*>, 64> memo_;
  size_t num_buckets_ = 0;
  int32_t last_ = -1;     // Bucket of the last AddCandidate, or -1 when it added nothing.
  int32_t current_ = -1;  // The rank being applied.
  std::priority_queue<int32_t, std::vector<int32_t>, std::greater<int32_t>> ranks_;
  MinHeap late_;
};

thread_local std::vector<RankMerger::Bucket> RankMerger::buckets_;
thread_local std::vector<int32_t> RankMerger::bucket_of_rank_;
thread_local std::vector<int32_t> RankMerger::dirty_;

}  // namespace

void MergeWithHeap(const BpeMergeMap& merges, std::vector<BpeSymbol>* symbols) {
  std::vector<BpeSymbol>& sym = *symbols;
  MinHeap queue;
  auto push = [&](int32_t left) {
    if (const BpeMerge* m = Find(merges, sym, left)) queue.push(HeapKey(m->rank, left));
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) push(i);
  while (!queue.empty()) {
    const uint64_t top = queue.top();
    queue.pop();
    const auto left = static_cast<int32_t>(top & 0xFFFFFFFFu);
    if (sym[left].len == 0) continue;
    const BpeMerge* m = Find(merges, sym, left);
    if (m == nullptr || m->rank != static_cast<int32_t>(top >> 32)) continue;  // Stale.
    Merge(sym, left, m->merged_id);
    if (sym[left].prev >= 0) push(sym[left].prev);
    push(left);
  }
}

void MergeByRank(const BpeMergeMap& merges, std::vector<BpeSymbol>* symbols) {
  // Ranks are merge-list indices, so they are below merges.size().
  RankMerger::Reserve(merges.size() + 1);
  RankMerger(merges, *symbols).Run();
}

}  // namespace iquest
