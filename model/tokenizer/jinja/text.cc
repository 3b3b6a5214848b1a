// Case mapping goes through utf8proc (simple mappings; Python's full mappings differ only for
// characters like ß that expand).
#include "model/tokenizer/jinja/text.h"

#include <cstdint>

#include "model/tokenizer/unicode.h"
#include "utf8proc.h"

namespace iquest::jinja::text {

std::u32string Decode(std::string_view utf8) {
  std::u32string out;
  out.reserve(utf8.size());
  for (size_t pos = 0; pos < utf8.size();) {
    char32_t cp = 0;
    const size_t n = unicode::DecodeAt(utf8, pos, &cp);
    if (n == 0) {
      out.push_back(unicode::kReplacement);
      pos += unicode::InvalidRunAt(utf8, pos);
    } else {
      out.push_back(cp);
      pos += n;
    }
  }
  return out;
}

std::string Encode(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) unicode::AppendUtf8(cp, &out);
  return out;
}

bool IsSpace(char32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f)) return true;
  if (cp < 0x80) return false;
  if (cp == 0x85 || cp == 0xa0) return true;
  const utf8proc_category_t cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

namespace {

bool IsCased(char32_t cp) {
  const auto c = static_cast<utf8proc_int32_t>(cp);
  return utf8proc_toupper(c) != c || utf8proc_tolower(c) != c;
}

char32_t ToUpper(char32_t cp) {
  return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp)));
}
char32_t ToLower(char32_t cp) {
  return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp)));
}

}  // namespace

std::string Upper(std::string_view s) {
  std::u32string cps = Decode(s);
  for (char32_t& cp : cps) cp = ToUpper(cp);
  return Encode(cps);
}

std::string Lower(std::string_view s) {
  std::u32string cps = Decode(s);
  for (char32_t& cp : cps) cp = ToLower(cp);
  return Encode(cps);
}

std::string Capitalize(std::string_view s) {
  std::u32string cps = Decode(s);
  for (size_t i = 0; i < cps.size(); ++i) cps[i] = i == 0 ? ToUpper(cps[i]) : ToLower(cps[i]);
  return Encode(cps);
}

std::string Title(std::string_view s) {
  std::u32string cps = Decode(s);
  bool previous_cased = false;
  for (char32_t& cp : cps) {
    cp = previous_cased ? ToLower(cp) : ToUpper(cp);
    previous_cased = IsCased(cp);
  }
  return Encode(cps);
}

std::string Strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const std::u32string cps = Decode(s);
  const std::u32string set = chars == nullptr ? U"" : Decode(*chars);
  const auto strip = [&](char32_t cp) {
    return chars == nullptr ? IsSpace(cp) : set.find(cp) != std::u32string::npos;
  };
  size_t begin = 0;
  size_t end = cps.size();
  if (left) {
    while (begin < end && strip(cps[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip(cps[end - 1])) --end;
  }
  return Encode(std::u32string_view(cps).substr(begin, end - begin));
}

std::vector<std::string> Split(std::string_view s, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep != nullptr) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
      const size_t found = s.find(*sep, pos);
      if (found == std::string_view::npos) break;
      parts.emplace_back(s.substr(pos, found - pos));
      pos = found + sep->size();
    }
    parts.emplace_back(s.substr(pos));
    return parts;
  }
  const std::u32string cps = Decode(s);
  size_t i = 0;
  while (true) {
    while (i < cps.size() && IsSpace(cps[i])) ++i;
    if (i == cps.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
      size_t end = cps.size();
      while (end > i && IsSpace(cps[end - 1])) --end;
      parts.push_back(Encode(std::u32string_view(cps).substr(i, end - i)));
      break;
    }
    const size_t start = i;
    while (i < cps.size() && !IsSpace(cps[i])) ++i;
    parts.push_back(Encode(std::u32string_view(cps).substr(start, i - start)));
  }
  return parts;
}

std::vector<std::string> SplitLines(std::string_view s) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.emplace_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

std::string Replace(std::string_view s, std::string_view old, std::string_view with,
                    int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `with` around every code point.
    const std::u32string cps = Decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += with;
        ++done;
      }
      if (i < cps.size()) unicode::AppendUtf8(cps[i], &out);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = s.find(old, pos);
    if (found == std::string_view::npos) break;
    out += s.substr(pos, found - pos);
    out += with;
    pos = found + old.size();
    ++done;
  }
  out += s.substr(pos);
  return out;
}

int64_t Count(std::string_view s, std::string_view needle) {
  if (needle.empty()) return static_cast<int64_t>(Decode(s).size()) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(needle); pos != std::string_view::npos;
       pos = s.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

}  // namespace iquest::jinja::text
