// The tokenizer.json encode pipeline (added tokens -> normalizer -> pre-tokenizer -> BPE ->
// post-processor) and the per-id decode pieces.
#include "model/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/unicode.h"
#include "utf8proc.h"

namespace iquest {
namespace {

// Inputs above this are refused before any work (the server's byte cap is far lower); it keeps
// every token count and offset well inside int32.
constexpr size_t kMaxInputBytes = size_t{256} << 20;

std::string ReplaceAllCopy(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string_view::npos;
       pos = hit + from.size()) {
    out.append(text.substr(pos, hit - pos));
    out.append(to);
  }
  out.append(text.substr(pos));
  return out;
}

std::string UnicodeNormalize(std::string_view text, int options) {
  bool ascii = true;
  for (char c : text) ascii &= static_cast<uint8_t>(c) < 0x80;
  if (ascii) return std::string(text);
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                            static_cast<utf8proc_ssize_t>(text.size()), &result,
                                            static_cast<utf8proc_option_t>(options));
  if (len < 0) return std::string(text);  // Only for invalid UTF-8, which Encode repairs first.
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(result, &std::free);
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(len));
}

// "<0xNN>" -> the byte, or -1.
int ParseByteToken(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (char c : token.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9') {
      value |= c - '0';
    } else if (c >= 'A' && c <= 'F') {
      value |= c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      value |= c - 'a' + 10;
    } else {
      return -1;
    }
  }
  return value;
}

void FuseUnknown(int32_t unk_id, size_t first, std::vector<int32_t>* ids) {
  size_t out = first;
  for (size_t i = first; i < ids->size(); ++i) {
    if ((*ids)[i] == unk_id && out > first && (*ids)[out - 1] == unk_id) continue;
    (*ids)[out++] = (*ids)[i];
  }
  ids->resize(out);
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Create(std::string_view tokenizer_json,
                                                                 TokenizerConfig config) {
  ASSIGN_OR_RETURN(HfTokenizerSpec spec, ParseTokenizerJson(tokenizer_json));
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  tokenizer->spec_ = std::move(spec);
  tokenizer->config_ = std::move(config);
  for (const AddedToken& token : tokenizer->spec_.added_tokens) {
    tokenizer->added_ids_[token.content] = token.id;
  }
  tokenizer->BuildPieces();
  tokenizer->ResolveSpecialIds();
  // An added token is special for matching when either file says so (tokenizer_config.json's
  // additional_special_tokens too): such tokens are never read out of plain text.
  std::vector<AddedToken> raw, normalized;
  for (AddedToken token : tokenizer->spec_.added_tokens) {
    token.special = token.special || tokenizer->IsSpecial(token.id);
    (token.normalized ? normalized : raw).push_back(std::move(token));
  }
  tokenizer->raw_added_ = AddedTokenMatcher(raw);
  tokenizer->normalized_added_ = AddedTokenMatcher(normalized);
  // tokenizer_config.json's add_bos_token / add_eos_token, when given, replace what the
  // post_processor adds (as transformers' Llama tokenizers rebuild their template from them).
  const TokenizerConfig& c = tokenizer->config_;
  if (c.add_bos_token.has_value()) {
    tokenizer->spec_.prefix_ids.clear();
    if (*c.add_bos_token && tokenizer->bos_id_ >= 0) {
      tokenizer->spec_.prefix_ids.push_back(tokenizer->bos_id_);
    }
  }
  if (c.add_eos_token.has_value()) {
    tokenizer->spec_.suffix_ids.clear();
    if (*c.add_eos_token && !tokenizer->eos_ids_.empty()) {
      tokenizer->spec_.suffix_ids.push_back(tokenizer->eos_ids_[0]);
    }
  }
  return tokenizer;
}

void HfTokenizer::BuildPieces() {
  const BpeModel& model = spec_.model;
  int32_t size = model.num_ids();
  for (const AddedToken& token : spec_.added_tokens) size = std::max(size, token.id + 1);
  pieces_.assign(static_cast<size_t>(size), Piece{});
  const DecoderSpec& decoder = spec_.decoder;
  for (int32_t id = 0; id < model.num_ids(); ++id) {
    const std::string& token = model.tokens()[id];
    if (token.empty()) continue;
    Piece& piece = pieces_[id];
    piece.present = true;
    if (decoder.byte_level) {
      piece.text = token;
      piece.raw_bytes = model.byte_level();
    } else if (const int byte = ParseByteToken(token); decoder.byte_fallback && byte >= 0) {
      piece.text = std::string(1, static_cast<char>(byte));
      piece.raw_bytes = true;
    } else {
      piece.text = token;
      for (const auto& [from, to] : decoder.replaces)
        piece.text = ReplaceAllCopy(piece.text, from, to);
    }
  }
  // Added tokens decode to their content, untouched by the decoder, except that SentencePiece
  // style decoders (everything but ByteLevel) also run on them, as in transformers.js.
  for (const AddedToken& token : spec_.added_tokens) {
    Piece& piece = pieces_[token.id];
    piece = Piece{token.content, false, token.special, true};
    if (!decoder.byte_level) {
      for (const auto& [from, to] : decoder.replaces)
        piece.text = ReplaceAllCopy(piece.text, from, to);
    }
  }
  for (const std::string& content : config_.additional_special_tokens) {
    if (const int32_t id = TokenToId(content); id >= 0) pieces_[id].special = true;
  }
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && pieces_[id].special;
}

int32_t HfTokenizer::TokenToId(std::string_view token) const {
  if (auto it = added_ids_.find(absl::string_view(token.data(), token.size()));
      it != added_ids_.end()) {
    return it->second;
  }
  return spec_.model.TokenId(token);
}

DecodeOptions HfTokenizer::decode_options() const {
  DecodeOptions options;
  options.strip_leading_spaces = spec_.decoder.strip_leading_spaces;
  options.clean_up_spaces = config_.clean_up_tokenization_spaces;
  return options;
}

void HfTokenizer::AddPiece(int32_t id, bool skip_special_tokens, bool* first,
                           DecodeStream* stream) const {
  if (id < 0 || id >= vocab_size() || !pieces_[id].present) return;
  const Piece& piece = pieces_[id];
  if (skip_special_tokens && piece.special) return;
  if (piece.raw_bytes) {
    stream->AddBytes(piece.text);
  } else {
    std::string_view text = piece.text;
    if (*first && spec_.decoder.strip_first_space && !text.empty() && text[0] == ' ') {
      text.remove_prefix(1);
    }
    stream->AddText(text);
  }
  *first = false;
}

std::string HfTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !pieces_[id].present) return "";
  return pieces_[id].text;
}

std::string HfTokenizer::Normalize(std::string_view text) const {
  std::string out(text);
  for (const NormalizerStep& step : spec_.normalizers) {
    switch (step.kind) {
      case NormalizerStep::Kind::kUnicode:
        out = UnicodeNormalize(out, step.utf8proc_options);
        break;
      case NormalizerStep::Kind::kPrepend:
        if (!out.empty()) out.insert(0, step.text);
        break;
      case NormalizerStep::Kind::kReplace:
        out = ReplaceAllCopy(out, step.text, step.content);
        break;
    }
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                         const EncodeOptions& options) const {
  if (text.size() > kMaxInputBytes) {
    return absl::InvalidArgumentError(absl::StrCat("text of ", text.size(),
                                                   " bytes exceeds the tokenizer's limit of ",
                                                   kMaxInputBytes, " bytes"));
  }
  std::string repaired;
  if (!unicode::IsValidUtf8(text)) {
    if (!options.plain_ranges.empty()) {
      return absl::InvalidArgumentError("text with plain ranges must be valid UTF-8");
    }
    repaired = unicode::RepairUtf8(text);
    text = repaired;
  }
  const ByteRange everything{0, text.size()};
  const std::span<const ByteRange> plain =
      options.parse_special_tokens ? options.plain_ranges : std::span(&everything, 1);
  std::vector<int32_t> ids;
  // Capped: a huge reservation is fresh pages on every call, and adversarial inputs yield few ids.
  ids.reserve(std::min<size_t>(text.size() / 3 + 4, 4096));
  if (options.add_special_tokens) ids = spec_.prefix_ids;
  std::vector<TextSegment> segments;
  raw_added_.Split(text, &segments, plain);
  for (size_t i = 0; i < segments.size(); ++i) {
    if (segments[i].token_id >= 0) {
      ids.push_back(segments[i].token_id);
      continue;
    }
    const size_t begin = static_cast<size_t>(segments[i].text.data() - text.data());
    const size_t end = begin + segments[i].text.size();
    const bool touches_plain = std::any_of(plain.begin(), plain.end(), [&](const ByteRange& r) {
      return r.begin < end && begin < r.end;
    });
    EncodeSection(segments[i].text, i, touches_plain, &ids);
  }
  if (options.add_special_tokens) {
    ids.insert(ids.end(), spec_.suffix_ids.begin(), spec_.suffix_ids.end());
  }
  return ids;
}

void HfTokenizer::EncodeSection(std::string_view text, size_t section_index, bool plain,
                                std::vector<int32_t>* ids) const {
  std::string normalized;
  if (!spec_.normalizers.empty()) {
    normalized = Normalize(text);
    text = normalized;
  }
  if (normalized_added_.empty()) {
    EncodeNormalized(text, section_index, ids);
    return;
  }
  std::vector<TextSegment> segments;
  // Offsets change under normalization: a section that touches plain text matches no special
  // token at all (special tokens are rarely normalized=true).
  const ByteRange everything{0, text.size()};
  normalized_added_.Split(text, &segments,
                          plain ? std::span(&everything, 1) : std::span<const ByteRange>());
  for (const TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids->push_back(segment.token_id);
    } else {
      EncodeNormalized(segment.text, section_index, ids);
    }
  }
}

void HfTokenizer::EncodeNormalized(std::string_view text, size_t section_index,
                                   std::vector<int32_t>* ids) const {
  const PreTokenizerSpec& pre = spec_.pre_tokenizer;
  std::string transformed;
  if (pre.metaspace) {
    transformed = ReplaceAllCopy(text, " ", pre.replacement);
    const bool prepend = pre.prepend == PreTokenizerSpec::Prepend::kAlways ||
                         (pre.prepend == PreTokenizerSpec::Prepend::kFirst && section_index == 0);
    if (prepend && transformed.compare(0, pre.replacement.size(), pre.replacement) != 0) {
      transformed.insert(0, pre.replacement);
    }
    text = transformed;
  } else if (pre.add_prefix_space && (text.empty() || text[0] != ' ')) {
    transformed = absl::StrCat(" ", std::string(text));
    text = transformed;
  }
  thread_local std::vector<std::string_view> words;
  words.clear();
  if (pre.split.has_value()) {
    SplitText(*pre.split, text, &words);
  } else if (pre.metaspace && pre.metaspace_split) {
    // Split before every replacement character, which starts its word.
    size_t start = 0;
    for (size_t hit = text.find(pre.replacement, 1); hit != std::string_view::npos;
         hit = text.find(pre.replacement, hit + pre.replacement.size())) {
      words.push_back(text.substr(start, hit - start));
      start = hit;
    }
    words.push_back(text.substr(start));
  } else {
    words.push_back(text);
  }
  const size_t first = ids->size();
  for (const std::string_view word : words) spec_.model.Encode(word, ids);
  if (spec_.model.fuse_unk() && spec_.model.unk_id() >= 0) {
    FuseUnknown(spec_.model.unk_id(), first, ids);
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  ASSIGN_OR_RETURN(TokenizerConfig config,
                   LoadTokenizerConfig((dir / "tokenizer_config.json").string()));
  ASSIGN_OR_RETURN(const std::string json_text,
                   ReadFileToString((dir / "tokenizer.json").string()));
  ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tokenizer,
                   HfTokenizer::Create(json_text, std::move(config)));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace iquest
