// UTF-8 helpers and Unicode character classes for the tokenizer.
#include "model/tokenizer/unicode.h"

#include <array>

#include "utf8proc.h"

namespace iquest::unicode {
namespace {

// Valid second-byte ranges per lead byte (Unicode Table 3-7); other continuation bytes are
// 0x80..0xBF.
bool SecondByteOk(uint8_t lead, uint8_t b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

// Sequence length announced by a lead byte, or 0 when the byte cannot start a sequence.
size_t LeadLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Number of bytes at `pos` that form a valid prefix of the sequence started there.
size_t ValidPrefix(std::string_view text, size_t pos, size_t need) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  size_t n = 1;
  while (n < need && pos + n < text.size()) {
    const auto b = static_cast<uint8_t>(text[pos + n]);
    const bool ok = n == 1 ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return n;
}

bool IsJsSpace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::array<CharClass, 128> MakeAsciiTable() {
  std::array<CharClass, 128> table{};
  for (char32_t c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      table[c] = CharClass::kLetter;
    } else if (c >= '0' && c <= '9') {
      table[c] = CharClass::kNumber;
    } else if (IsJsSpace(c)) {
      table[c] = CharClass::kSpace;
    } else {
      table[c] = CharClass::kOther;
    }
  }
  return table;
}

const std::array<CharClass, 128> kAsciiClasses = MakeAsciiTable();

}  // namespace

size_t DecodeAt(std::string_view text, size_t pos, char32_t* cp) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t need = LeadLength(lead);
  if (need == 0) return 0;
  if (need == 1) {
    *cp = lead;
    return 1;
  }
  if (ValidPrefix(text, pos, need) != need) return 0;
  char32_t value = lead & (0x7F >> need);
  for (size_t i = 1; i < need; ++i) value = (value << 6) | (text[pos + i] & 0x3F);
  *cp = value;
  return need;
}

size_t InvalidRunAt(std::string_view text, size_t pos) {
  const size_t need = LeadLength(static_cast<uint8_t>(text[pos]));
  return need == 0 ? 1 : ValidPrefix(text, pos, need);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValidUtf8(std::string_view text) {
  char32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t len = DecodeAt(text, pos, &cp);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

std::string RepairUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char32_t cp;
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = DecodeAt(text, pos, &cp);
    if (len > 0) {
      out.append(text.substr(pos, len));
      pos += len;
    } else {
      AppendUtf8(kReplacement, &out);
      pos += InvalidRunAt(text, pos);
    }
  }
  return out;
}

size_t IncompleteTail(std::string_view text) {
  const size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t pos = n - back;
    const auto b = static_cast<uint8_t>(text[pos]);
    if (b >= 0x80 && b <= 0xBF) continue;  // A continuation byte: keep looking for the lead.
    const size_t need = LeadLength(b);
    if (need <= back) return 0;
    return ValidPrefix(text, pos, need) == back ? back : 0;
  }
  return 0;
}

CharClass Classify(char32_t cp) {
  if (cp < 128) return kAsciiClasses[cp];
  if (IsJsSpace(cp)) return CharClass::kSpace;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::kLetter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::kNumber;
    default:
      return CharClass::kOther;
  }
}

}  // namespace iquest::unicode
