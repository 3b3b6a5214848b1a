#include "structured/utf8_ranges.h"

#include <algorithm>
#include <string>

namespace iquest {
namespace {

constexpr char32_t kSurrogateLo = 0xD800;
constexpr char32_t kSurrogateHi = 0xDFFF;

int Utf8Length(char32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

void EncodeTo(char32_t c, uint8_t* out) {
  switch (Utf8Length(c)) {
    case 1:
      out[0] = static_cast<uint8_t>(c);
      return;
    case 2:
      out[0] = static_cast<uint8_t>(0xC0 | (c >> 6));
      out[1] = static_cast<uint8_t>(0x80 | (c & 0x3F));
      return;
    case 3:
      out[0] = static_cast<uint8_t>(0xE0 | (c >> 12));
      out[1] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | (c & 0x3F));
      return;
    default:
      out[0] = static_cast<uint8_t>(0xF0 | (c >> 18));
      out[1] = static_cast<uint8_t>(0x80 | ((c >> 12) & 0x3F));
      out[2] = static_cast<uint8_t>(0x80 | ((c >> 6) & 0x3F));
      out[3] = static_cast<uint8_t>(0x80 | (c & 0x3F));
  }
}

// [lo, hi] of one encoded length whose byte sequences form a product of byte ranges once the
// range is split where a lower-order continuation byte is not full.
void Split(char32_t lo, char32_t hi, std::vector<GrammarExpr>& out) {
  static constexpr char32_t kLengthEnds[] = {0x7F, 0x7FF, 0xFFFF};
  for (char32_t end : kLengthEnds) {
    if (lo <= end && hi > end) {
      Split(lo, end, out);
      Split(end + 1, hi, out);
      return;
    }
  }
  const int n = Utf8Length(lo);
  for (int i = 1; i < n; ++i) {
    const char32_t m = (char32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        Split(lo, lo | m, out);
        Split((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        Split(lo, (hi & ~m) - 1, out);
        Split(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  EncodeTo(lo, a);
  EncodeTo(hi, b);
  std::vector<GrammarExpr> seq;
  for (int i = 0; i < n; ++i) seq.push_back(GrammarExpr::Bytes(ByteSet::Range(a[i], b[i])));
  out.push_back(GrammarExpr::Seq(std::move(seq)));
}

}  // namespace

CodepointSet CodepointSet::All() {
  CodepointSet s;
  s.Add(0, kMaxCodepoint);
  return s;
}

void CodepointSet::Add(char32_t lo, char32_t hi) {
  if (lo > hi) return;
  hi = std::min(hi, kMaxCodepoint);
  if (lo <= kSurrogateHi && hi >= kSurrogateLo) {
    if (lo < kSurrogateLo) ranges_.push_back({lo, kSurrogateLo - 1});
    if (hi > kSurrogateHi) ranges_.push_back({kSurrogateHi + 1, hi});
  } else {
    ranges_.push_back({lo, hi});
  }
  Normalize();
}

void CodepointSet::Add(const CodepointSet& other) {
  ranges_.insert(ranges_.end(), other.ranges_.begin(), other.ranges_.end());
  Normalize();
}

void CodepointSet::Normalize() {
  std::sort(ranges_.begin(), ranges_.end());
  std::vector<std::pair<char32_t, char32_t>> merged;
  for (const auto& r : ranges_) {
    if (!merged.empty() && r.first <= merged.back().second + 1) {
      merged.back().second = std::max(merged.back().second, r.second);
    } else {
      merged.push_back(r);
    }
  }
  ranges_ = std::move(merged);
}

CodepointSet CodepointSet::Complement() const {
  CodepointSet out;
  char32_t next = 0;
  for (const auto& [lo, hi] : ranges_) {
    if (lo > next) out.Add(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.Add(next, kMaxCodepoint);
  return out;
}

CodepointSet CodepointSet::Intersect(const CodepointSet& other) const {
  CodepointSet out;
  for (const auto& [lo, hi] : ranges_) {
    for (const auto& [olo, ohi] : other.ranges_) out.Add(std::max(lo, olo), std::min(hi, ohi));
  }
  return out;
}

bool CodepointSet::Contains(char32_t c) const {
  for (const auto& [lo, hi] : ranges_) {
    if (c >= lo && c <= hi) return true;
  }
  return false;
}

GrammarExpr Utf8Expr(const CodepointSet& set, bool json_escaped) {
  std::vector<GrammarExpr> choices;
  if (json_escaped) {
    CodepointSet specials;
    specials.Add(0, 0x1F);
    specials.Add('"', '"');
    specials.Add('\\', '\\');
    const CodepointSet kept = set.Intersect(specials.Complement());
    if (!kept.empty()) choices.push_back(Utf8Expr(kept));
    static constexpr const char* kShort[] = {"b", "t", "n", nullptr, "f", "r"};  // 0x08..0x0D
    for (const auto& [lo, hi] : set.ranges()) {
      for (char32_t c = lo; c <= std::min<char32_t>(hi, 0x5C); ++c) {
        if (!specials.Contains(c)) continue;
        std::string escape = "\\";
        if (c == '"' || c == '\\') {
          escape.push_back(static_cast<char>(c));
        } else if (c >= 0x08 && c <= 0x0D && kShort[c - 0x08] != nullptr) {
          escape += kShort[c - 0x08];
        } else {
          static constexpr char kHex[] = "0123456789abcdef";
          escape += "u00";
          escape.push_back(kHex[c >> 4]);
          escape.push_back(kHex[c & 15]);
        }
        choices.push_back(GrammarExpr::Literal(escape));
      }
    }
    return GrammarExpr::Alt(std::move(choices));
  }
  // One byte set for the whole ASCII part keeps the common case a single element.
  ByteSet ascii;
  for (const auto& [lo, hi] : set.ranges()) {
    if (lo < 0x80)
      ascii.AddAll(ByteSet::Range(static_cast<uint8_t>(lo),
                                  static_cast<uint8_t>(std::min<char32_t>(hi, 0x7F))));
    if (hi >= 0x80) Split(std::max<char32_t>(lo, 0x80), hi, choices);
  }
  if (!ascii.empty()) choices.insert(choices.begin(), GrammarExpr::Bytes(ascii));
  return GrammarExpr::Alt(std::move(choices));
}

int DecodeUtf8Char(std::string_view text, size_t pos, char32_t* cp) {
  const unsigned char c = static_cast<unsigned char>(text[pos]);
  const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (len == 0 || pos + static_cast<size_t>(len) > text.size()) return 0;
  char32_t value = len == 1 ? c : c & (0xFF >> (len + 1));
  for (int i = 1; i < len; ++i) {
    const unsigned char cc = static_cast<unsigned char>(text[pos + static_cast<size_t>(i)]);
    if ((cc & 0xC0) != 0x80) return 0;
    value = (value << 6) | (cc & 0x3F);
  }
  if (Utf8Length(value) != len || value > kMaxCodepoint ||
      (value >= kSurrogateLo && value <= kSurrogateHi)) {
    return 0;
  }
  *cp = value;
  return len;
}

int ReadHexScalar(std::string_view text, size_t pos, int digits, char32_t* value) {
  char32_t v = 0;
  for (int i = 0; i < digits; ++i) {
    const size_t at = pos + static_cast<size_t>(i);
    if (at >= text.size()) return -1;
    const char h = text[at];
    const int d = h >= '0' && h <= '9'   ? h - '0'
                  : h >= 'a' && h <= 'f' ? h - 'a' + 10
                  : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v * 16 + static_cast<char32_t>(d);
  }
  if (v > kMaxCodepoint || (v >= kSurrogateLo && v <= kSurrogateHi)) return -1;
  *value = v;
  return digits;
}

void AppendUtf8Char(char32_t c, std::string& out) {
  uint8_t bytes[4];
  EncodeTo(c, bytes);
  out.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(Utf8Length(c)));
}

}  // namespace iquest
