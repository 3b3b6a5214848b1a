// BPE merge loop: a doubly linked list of symbols and a min-heap of (rank, position) candidate
// pairs, validated lazily when popped; ties go to the leftmost pair, as in HF tokenizers and
// transformers.js.
#include "model/tokenizer/bpe_model.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <queue>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "model/json_util.h"
#include "model/tokenizer/unicode.h"

namespace iquest {
namespace {

// Words longer than this are not cached (as transformers.js): they rarely repeat.
constexpr size_t kMaxCachedWordBytes = 256;
// The per-thread cache is dropped when it grows past this many words (bounds its memory).
constexpr size_t kMaxCachedWords = 1 << 17;

struct WordCache {
  uint64_t owner = 0;
  absl::flat_hash_map<std::string, absl::InlinedVector<int32_t, 4>> words;
};

WordCache& ThreadCache(uint64_t owner) {
  thread_local WordCache cache;
  if (cache.owner != owner || cache.words.size() > kMaxCachedWords) {
    cache.words.clear();
    cache.owner = owner;
  }
  return cache;
}

std::atomic<uint64_t> next_instance_id{1};

// Undoes bytes_to_unicode on a vocabulary string; false when a character is not in the map.
bool UnicodeToBytes(const std::string& token, std::string* bytes) {
  static const auto* reverse = [] {
    auto* map = new absl::flat_hash_map<char32_t, uint8_t>();
    for (int b = 0; b < 256; ++b) (*map)[ByteToUnicode(static_cast<uint8_t>(b))] = b;
    return map;
  }();
  bytes->clear();
  char32_t cp;
  for (size_t pos = 0; pos < token.size();) {
    const size_t len = unicode::DecodeAt(token, pos, &cp);
    if (len == 0) return false;
    auto it = reverse->find(cp);
    if (it == reverse->end()) return false;
    bytes->push_back(static_cast<char>(it->second));
    pos += len;
  }
  return true;
}

}  // namespace

char32_t ByteToUnicode(uint8_t byte) {
  const bool printable =
      (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE);
  if (printable) return byte;
  // The 68 other bytes map, in order, to U+0100 onwards.
  int rank = 0;
  for (int b = 0; b < byte; ++b) {
    const bool p = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (!p) ++rank;
  }
  return 0x100 + rank;
}

absl::StatusOr<BpeModel> BpeModel::FromJson(const nlohmann::json& model, bool byte_level,
                                            const std::string& source) {
  BpeModel bpe;
  bpe.byte_level_ = byte_level;
  bpe.instance_id_ = next_instance_id.fetch_add(1);
  const JsonReader reader(model, source, "model.");
  ASSIGN_OR_RETURN(bpe.byte_fallback_, reader.Bool("byte_fallback", false));
  ASSIGN_OR_RETURN(bpe.ignore_merges_, reader.Bool("ignore_merges", false));
  ASSIGN_OR_RETURN(bpe.fuse_unk_, reader.Bool("fuse_unk", false));
  if (reader.Has("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0) {
    return reader.FieldError("dropout", "must be null or 0 (BPE dropout is not supported)");
  }
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return reader.FieldError("vocab", "must be an object of token -> id");
  }
  // Ids beyond this would make the id table absurdly large; real vocabularies are < 1M.
  constexpr int64_t kMaxId = 1 << 24;
  std::string bytes;
  for (const auto& [token, id_json] : vocab->items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() >= kMaxId) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": field 'model.vocab' entry '", token,
                                                     "' must have an id in [0, 2^24)"));
    }
    const auto id = static_cast<int32_t>(id_json.get<int64_t>());
    if (id >= bpe.num_ids()) bpe.id_to_token_.resize(static_cast<size_t>(id) + 1);
    if (!bpe.id_to_token_[id].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": field 'model.vocab' has id ", id, " twice"));
    }
    // Tokens outside the byte-level alphabet cannot come out of merges; keep their text.
    const bool mapped = byte_level && UnicodeToBytes(token, &bytes);
    bpe.id_to_token_[id] = mapped ? bytes : token;
    if (mapped || !byte_level) bpe.token_to_id_[bpe.id_to_token_[id]] = id;
    bpe.max_token_bytes_ = std::max(bpe.max_token_bytes_, bpe.id_to_token_[id].size());
  }
  if (reader.Has("unk_token")) {
    ASSIGN_OR_RETURN(const std::string unk, reader.String("unk_token"));
    bpe.unk_id_ = bpe.TokenId(unk);
  }
  for (int b = 0; b < 256; ++b) {
    bpe.byte_ids_[b] = bpe.TokenId(std::string(1, static_cast<char>(b)));
    bpe.byte_fallback_ids_[b] = bpe.TokenId(absl::StrFormat("<0x%02X>", b));
  }
  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return reader.FieldError("merges", "must be an array");
  }
  RETURN_IF_ERROR(bpe.AddMerges(*merges, source));
  return bpe;
}

absl::Status BpeModel::AddMerges(const nlohmann::json& merges, const std::string& source) {
  merges_.reserve(merges.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const nlohmann::json& m = merges[rank];
    const std::string where = absl::StrCat(source, ": field 'model.merges[", rank, "]' ");
    if (m.is_string()) {
      // Legacy "a b" form: exactly one separating space.
      const std::string& s = m.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(where + "must be \"left right\" with one space");
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(where + "must be a string or a [left, right] pair");
    }
    std::string left_bytes = left, right_bytes = right;
    if (byte_level_ &&
        (!UnicodeToBytes(left, &left_bytes) || !UnicodeToBytes(right, &right_bytes))) {
      return absl::InvalidArgumentError(where + "uses a character outside the byte-level alphabet");
    }
    const int32_t left_id = TokenId(left_bytes);
    const int32_t right_id = TokenId(right_bytes);
    const int32_t merged_id = TokenId(left_bytes + right_bytes);
    if (left_id < 0 || right_id < 0 || merged_id < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, "references a token missing from the vocabulary: '", left, "' + '", right, "'"));
    }
    // A later duplicate wins, as in HF tokenizers and transformers.js.
    merges_[BpePairKey(left_id, right_id)] = BpeMerge{static_cast<int32_t>(rank), merged_id};
  }
  return absl::OkStatus();
}

int32_t BpeModel::TokenId(std::string_view token) const {
  auto it = token_to_id_.find(absl::string_view(token.data(), token.size()));
  return it == token_to_id_.end() ? -1 : it->second;
}

const BpeMerge* BpeModel::FindMerge(int32_t left, int32_t right) const {
  if (left < 0 || right < 0) return nullptr;
  auto it = merges_.find(BpePairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<Symbol>* symbols) const {
  symbols->clear();
  char32_t cp;
  for (size_t pos = 0; pos < word.size();) {
    size_t len = 1;
    int32_t id;
    if (byte_level_) {
      id = byte_ids_[static_cast<uint8_t>(word[pos])];
    } else {
      len = unicode::DecodeAt(word, pos, &cp);
      if (len == 0) len = 1;  // Unreachable for repaired input.
      id = TokenId(word.substr(pos, len));
    }
    const auto index = static_cast<int32_t>(symbols->size());
    symbols->push_back(Symbol{id, index - 1, index + 1, static_cast<uint32_t>(len)});
    pos += len;
  }
  if (!symbols->empty()) symbols->back().next = -1;
}

void BpeModel::EmitSymbols(std::string_view word, const std::vector<Symbol>& symbols,
                           std::vector<int32_t>* ids) const {
  const size_t first = ids->size();
  size_t start = 0;  // Live symbols tile the word, so offsets are running sums of lengths.
  for (int32_t i = 0; i >= 0 && i < static_cast<int32_t>(symbols.size()); i = symbols[i].next) {
    const Symbol& s = symbols[i];
    start += s.len;
    if (s.id >= 0) {
      ids->push_back(s.id);
      continue;
    }
    const std::string_view bytes = word.substr(start - s.len, s.len);
    bool all_bytes = byte_fallback_;
    for (char c : bytes) all_bytes &= byte_fallback_ids_[static_cast<uint8_t>(c)] >= 0;
    if (all_bytes) {
      for (char c : bytes) ids->push_back(byte_fallback_ids_[static_cast<uint8_t>(c)]);
    } else if (unk_id_ >= 0 && !(fuse_unk_ && ids->size() > first && ids->back() == unk_id_)) {
      // Fusing within the word only keeps cached results context-free; the tokenizer fuses
      // across words.
      ids->push_back(unk_id_);
    }
  }
}

void BpeModel::EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const {
  thread_local std::vector<Symbol> symbols;
  InitialSymbols(word, &symbols);
  // Bucketing by rank pays off on long words; short ones are cheaper with the heap.
  constexpr size_t kMinSymbolsForRankBuckets = 64;
  if (symbols.size() >= kMinSymbolsForRankBuckets) {
    MergeByRank(merges_, &symbols);
  } else if (symbols.size() > 1) {
    MergeWithHeap(merges_, &symbols);
  }
  EmitSymbols(word, symbols, ids);
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_ && word.size() <= max_token_bytes_) {
    if (const int32_t id = TokenId(word); id >= 0) {
      ids->push_back(id);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    EncodeUncached(word, ids);
    return;
  }
  WordCache& cache = ThreadCache(instance_id_);
  const absl::string_view key(word.data(), word.size());
  if (auto it = cache.words.find(key); it != cache.words.end()) {
    ids->insert(ids->end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t first = ids->size();
  EncodeUncached(word, ids);
  cache.words.emplace(key, absl::InlinedVector<int32_t, 4>(ids->begin() + first, ids->end()));
}

}  // namespace iquest
