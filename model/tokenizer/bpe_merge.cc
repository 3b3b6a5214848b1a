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

// State of MergeByRank. Candidates above the rank being applied wait in per-rank buckets of
// positions; those at or below it (merge lists need not be ordered) go to `late_`, a
// (rank, position) heap interleaved with the current bucket. Positions touched by a merge are
// only noted (`dirty_`) and bucketed once the rank is done, so each gets one lookup and one push
// for its final pair instead of one per intermediate pair.
class RankMerger {
 public:
  RankMerger(const BpeMergeMap& merges, std::vector<BpeSymbol>& sym) : merges_(merges), sym_(sym) {
    memo_.fill({~uint64_t{0}, nullptr});
  }

  void Run() {
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym_.size()); ++i) AddCandidate(i);
    while (!ranks_.empty()) {
      current_ = ranks_.top();
      ranks_.pop();
      ApplyRank();
      for (const int32_t left : dirty_) {
        if (sym_[left].len > 0) AddCandidate(left);
      }
      dirty_.clear();
    }
  }

 private:
  struct Bucket {
    int32_t rank;
    std::vector<int32_t> positions;
  };

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
    if (m == nullptr || m->rank <= current_) return;  // <= current_: only at the start (-1).
    int32_t& index = bucket_of_rank_[m->rank];
    if (index < 0) {
      index = static_cast<int32_t>(num_buckets_++);
      if (buckets_.size() < num_buckets_) buckets_.emplace_back();
      buckets_[index].rank = m->rank;
      buckets_[index].positions.clear();
      ranks_.push(m->rank);
    }
    buckets_[index].positions.push_back(left);
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

  void ApplyRank() {
    // Merges only add to other buckets, so this one is stable; `buckets_` may grow, hence `b`.
    const size_t b = bucket_of_rank_[current_];
    std::vector<int32_t>& sorted = buckets_[b].positions;
    if (!std::is_sorted(sorted.begin(), sorted.end())) std::sort(sorted.begin(), sorted.end());
    const size_t count = sorted.size();
    for (size_t i = 0;;) {
      const bool bucket_left = i < count;
      if (!late_.empty() &&
          (!bucket_left || late_.top() < HeapKey(current_, buckets_[b].positions[i]))) {
        const uint64_t top = late_.top();
        late_.pop();
        Apply(static_cast<int32_t>(top >> 32), static_cast<int32_t>(top & 0xFFFFFFFFu));
      } else if (bucket_left) {
        Apply(current_, buckets_[b].positions[i++]);
      } else {
        break;
      }
    }
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
