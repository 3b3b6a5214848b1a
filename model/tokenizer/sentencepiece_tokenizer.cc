// SentencePiece-backed tokenizer: special-token bookkeeping and decode pieces around
// libsentencepiece.
#include "model/tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/tokenizer/unicode.h"

namespace iquest {
namespace {

constexpr std::string_view kSpaceMark = "\u2581";
// What SentencePiece prints for the unknown piece.
constexpr std::string_view kUnknownSurface = " \u2047 ";
constexpr size_t kMaxInputBytes = size_t{256} << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Create(
    const std::string& model_path, TokenizerConfig config) {
  std::string error;
  std::unique_ptr<SpmProcessor> spm = SpmProcessor::Load(model_path, &error);
  if (spm == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(model_path, ": ", error));
  }
  std::unique_ptr<SentencePieceTokenizer> tokenizer(new SentencePieceTokenizer());
  tokenizer->spm_ = std::move(spm);
  tokenizer->config_ = std::move(config);
  for (const AddedToken& token : tokenizer->config_.added_tokens) {
    if (token.id >=
        tokenizer->spm_->size() + static_cast<int>(tokenizer->config_.added_tokens.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer_config.json: added token '", token.content, "' has id ", token.id,
                       " beyond the vocabulary of ", tokenizer->spm_->size()));
    }
    tokenizer->added_ids_[token.content] = token.id;
  }
  tokenizer->BuildPieces();
  tokenizer->ResolveSpecialIds();
  // Special for matching when tokenizer_config.json marks it either way (never read out of
  // plain text).
  std::vector<AddedToken> added = tokenizer->config_.added_tokens;
  // transformers registers the model's <unk>, <s> and </s> as special added tokens even
  // without a tokenizer_config.json (LlamaTokenizer's defaults), so their text in a prompt or
  // a chat template is the control id, not pieces.
  for (const int id :
       {tokenizer->spm_->unk_id(), tokenizer->spm_->bos_id(), tokenizer->spm_->eos_id()}) {
    if (id < 0 ||
        std::any_of(added.begin(), added.end(), [&](const AddedToken& t) { return t.id == id; })) {
      continue;
    }
    AddedToken token;
    token.content = tokenizer->spm_->Piece(id);
    token.id = id;
    token.special = true;
    added.push_back(std::move(token));
  }
  std::vector<AddedToken> special;
  for (AddedToken& token : added) {
    token.special = token.special || tokenizer->IsSpecial(token.id);
    if (token.special) special.push_back(token);
  }
  tokenizer->added_ = AddedTokenMatcher(added);
  tokenizer->special_ = AddedTokenMatcher(special);
  // Without tokenizer_config.json the model's own BOS/EOS apply, as in SentencePiece's defaults.
  if (tokenizer->config_.bos_token.empty()) tokenizer->bos_id_ = tokenizer->spm_->bos_id();
  if (tokenizer->config_.eos_token.empty() && tokenizer->spm_->eos_id() >= 0) {
    tokenizer->eos_ids_ = {tokenizer->spm_->eos_id()};
  }
  // transformers' Llama-style slow tokenizers default to add_bos_token=true, add_eos=false.
  tokenizer->add_bos_ = tokenizer->config_.add_bos_token.value_or(true);
  tokenizer->add_eos_ = tokenizer->config_.add_eos_token.value_or(false);
  tokenizer->unk_text_ = tokenizer->spm_->Piece(tokenizer->spm_->unk_id());
  std::vector<int> unk_ids;
  if (!tokenizer->spm_->Encode(tokenizer->unk_text_, &unk_ids, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(model_path, ": ", error));
  }
  tokenizer->unk_text_ids_ = unk_ids.size();
  return tokenizer;
}

void SentencePieceTokenizer::BuildPieces() {
  int32_t size = spm_->size();
  for (const AddedToken& token : config_.added_tokens) size = std::max(size, token.id + 1);
  pieces_.assign(static_cast<size_t>(size), Piece{});
  for (int32_t id = 0; id < spm_->size(); ++id) {
    Piece& piece = pieces_[id];
    std::string text = spm_->Piece(id);
    if (spm_->IsByte(id) && text.size() == 6) {
      piece.text =
          std::string(1, static_cast<char>(std::strtol(text.substr(3, 2).c_str(), nullptr, 16)));
      piece.raw_byte = true;
      continue;
    }
    piece.special = spm_->IsControl(id) || spm_->IsUnknown(id);
    if (spm_->IsUnknown(id)) {
      piece.text = std::string(kUnknownSurface);
      continue;
    }
    piece.text.reserve(text.size());
    for (size_t pos = 0; pos < text.size();) {
      if (std::string_view(text).substr(pos, kSpaceMark.size()) == kSpaceMark) {
        piece.text.push_back(' ');
        pos += kSpaceMark.size();
      } else {
        piece.text.push_back(text[pos++]);
      }
    }
  }
  for (const AddedToken& token : config_.added_tokens) {
    pieces_[token.id] = Piece{token.content, false, token.special};
  }
  for (const std::string& content : config_.additional_special_tokens) {
    if (const int32_t id = TokenToId(content); id >= 0) pieces_[id].special = true;
  }
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && pieces_[id].special;
}

int32_t SentencePieceTokenizer::TokenToId(std::string_view token) const {
  if (auto it = added_ids_.find(absl::string_view(token.data(), token.size()));
      it != added_ids_.end()) {
    return it->second;
  }
  const int id = spm_->PieceToId(token);
  return id == spm_->unk_id() && token != spm_->Piece(id) ? -1 : id;
}

DecodeOptions SentencePieceTokenizer::decode_options() const {
  DecodeOptions options;
  // SentencePiece removes the space it added in front of the text.
  options.strip_leading_spaces = spm_->add_dummy_prefix() ? 1 : 0;
  options.clean_up_spaces = false;
  return options;
}

void SentencePieceTokenizer::AddPiece(int32_t id, bool skip_special_tokens, bool* first,
                                      DecodeStream* stream) const {
  if (id < 0 || id >= vocab_size()) return;
  const Piece& piece = pieces_[id];
  if (skip_special_tokens && piece.special) return;
  if (piece.raw_byte) {
    stream->AddBytes(piece.text);
  } else {
    stream->AddText(piece.text);
  }
  *first = false;
}

std::string SentencePieceTokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return "";
  return pieces_[id].text;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    std::string_view text, const EncodeOptions& options) const {
  if (text.size() > kMaxInputBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("text of ", text.size(), " bytes exceeds the tokenizer's limit"));
  }
  std::string repaired;
  if (!unicode::IsValidUtf8(text)) {
    if (!options.plain_ranges.empty()) {
      return absl::InvalidArgumentError("text with plain ranges must be valid UTF-8");
    }
    repaired = unicode::RepairUtf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  if (options.add_special_tokens && add_bos_ && bos_id_ >= 0) ids.push_back(bos_id_);
  // SentencePiece itself never reads control symbols out of text; only added tokens are matched.
  const ByteRange everything{0, text.size()};
  std::vector<TextSegment> segments;
  added_.Split(text, &segments,
               options.parse_special_tokens ? options.plain_ranges : std::span(&everything, 1));
  std::vector<int> piece_ids;
  std::string error;
  // Only plain text can still hold a special token's text; otherwise added_ took them all.
  const bool may_hold_specials = !options.parse_special_tokens || !options.plain_ranges.empty();
  std::vector<TextSegment> inner;
  std::vector<std::string_view> parts;
  for (const TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
      continue;
    }
    // A special token's text left in plain text (content, or parse_special_tokens off) would
    // still be matched by SentencePiece when the model lists it as a user-defined symbol: cut
    // the text one byte into each such occurrence, so no piece holds it whole.
    parts.clear();
    if (may_hold_specials) special_.Split(segment.text, &inner);
    size_t from = 0;
    for (const TextSegment& s : inner) {
      if (s.token_id < 0) continue;
      const size_t cut = static_cast<size_t>(s.text.data() - segment.text.data()) + 1;
      parts.push_back(segment.text.substr(from, cut - from));
      from = cut;
    }
    inner.clear();
    parts.push_back(segment.text.substr(from));
    for (const std::string_view part : parts) {
      if (part.empty()) continue;
      const bool at_start = part.data() == text.data();
      if (!(at_start ? spm_->Encode(part, &piece_ids, &error)
                     : EncodeContinuation(part, &piece_ids, &error))) {
        return absl::InternalError(absl::StrCat("sentencepiece: ", error));
      }
      ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
    }
  }
  if (options.add_special_tokens && add_eos_ && !eos_ids_.empty()) ids.push_back(eos_ids_[0]);
  return ids;
}

bool SentencePieceTokenizer::EncodeContinuation(std::string_view text, std::vector<int>* ids,
                                                std::string* error) const {
  if (!spm_->Encode(unk_text_ + std::string(text), ids, error)) return false;
  ids->erase(ids->begin(), ids->begin() + std::min(unk_text_ids_, ids->size()));
  return true;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(
    const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  ASSIGN_OR_RETURN(TokenizerConfig config,
                   LoadTokenizerConfig((dir / "tokenizer_config.json").string()));
  ASSIGN_OR_RETURN(
      std::unique_ptr<SentencePieceTokenizer> tokenizer,
      SentencePieceTokenizer::Create((dir / "tokenizer.model").string(), std::move(config)));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace iquest
