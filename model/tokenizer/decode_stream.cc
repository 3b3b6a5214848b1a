// Streaming UTF-8 decoding and clean-up with the hold-back rules that make chunked output equal to
// the one-shot result.
#include "model/tokenizer/decode_stream.h"

#include <array>
#include <utility>

#include "model/tokenizer/unicode.h"

namespace iquest {
namespace {

// Every clean-up pattern is a space followed by at most 3 more bytes, in this order.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kCleanUps = {{
    {" .", "."},
    {" ?", "?"},
    {" !", "!"},
    {" ,", ","},
    {" ' ", "'"},
    {" n't", "n't"},
    {" 'm", "'m"},
    {" 's", "'s"},
    {" 've", "'ve"},
    {" 're", "'re"},
}};

void ReplaceAll(std::string& text, std::string_view from, std::string_view to) {
  if (text.find(from) == std::string::npos) return;
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(text, pos, hit - pos);
    out.append(to);
  }
  out.append(text, pos);
  text = std::move(out);
}

// The largest cut `c` in `text` such that the 3 bytes before it are not spaces and `c` is a
// character boundary: no clean-up pattern (a space plus <= 3 bytes) can span such a cut, in any
// of the sequential passes, because the passes only ever delete spaces.
size_t SafeCleanUpCut(std::string_view text) {
  for (size_t c = text.size(); c >= 3; --c) {
    if (c < text.size() && (static_cast<uint8_t>(text[c]) & 0xC0) == 0x80) continue;
    if (text[c - 1] != ' ' && text[c - 2] != ' ' && text[c - 3] != ' ') return c;
  }
  return 0;
}

}  // namespace

std::string CleanUpTokenization(std::string_view text) {
  std::string out(text);
  for (const auto& [from, to] : kCleanUps) ReplaceAll(out, from, to);
  return out;
}

void DecodeStream::Append(std::string_view text) {
  while (strip_left_ > 0 && !text.empty()) {
    if (text[0] != ' ') {
      strip_left_ = 0;
      break;
    }
    text.remove_prefix(1);
    --strip_left_;
  }
  pending_.append(text);
}

void DecodeStream::DecodeBytes(bool at_end) {
  size_t pos = 0;
  std::string text;
  char32_t cp;
  while (pos < bytes_.size()) {
    const size_t len = unicode::DecodeAt(bytes_, pos, &cp);
    if (len > 0) {
      text.append(bytes_, pos, len);
      pos += len;
      continue;
    }
    const size_t run = unicode::InvalidRunAt(bytes_, pos);
    // A valid prefix cut short by the end of the bytes may still be completed.
    if (!at_end && pos + run == bytes_.size() && unicode::IncompleteTail(bytes_) == run) break;
    unicode::AppendUtf8(unicode::kReplacement, &text);
    pos += run;
  }
  bytes_.erase(0, pos);
  Append(text);
}

void DecodeStream::AddBytes(std::string_view bytes) {
  bytes_.append(bytes);
  DecodeBytes(/*at_end=*/false);
}

void DecodeStream::AddText(std::string_view text) {
  if (!bytes_.empty()) DecodeBytes(/*at_end=*/true);
  Append(text);
}

void DecodeStream::TakeStable(std::string* out) {
  if (!options_.clean_up_spaces) {
    out->append(pending_);
    pending_.clear();
    return;
  }
  const size_t cut = SafeCleanUpCut(pending_);
  if (cut == 0) return;
  out->append(CleanUpTokenization(std::string_view(pending_).substr(0, cut)));
  pending_.erase(0, cut);
}

void DecodeStream::Finish(std::string* out) {
  if (!bytes_.empty()) DecodeBytes(/*at_end=*/true);
  out->append(options_.clean_up_spaces ? CleanUpTokenization(pending_) : pending_);
  pending_.clear();
}

}  // namespace iquest
