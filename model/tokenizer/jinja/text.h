// The Unicode-aware string operations Python gives jinja templates: code point indexing,
// case mapping, whitespace, str.split and friends.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace iquest::jinja::text {

std::u32string Decode(std::string_view utf8);  // Invalid bytes become U+FFFD.
std::string Encode(std::u32string_view cps);

bool IsSpace(char32_t cp);  // Python's str.isspace.
std::string Upper(std::string_view s);
std::string Lower(std::string_view s);
std::string Capitalize(std::string_view s);  // str.capitalize.
std::string Title(std::string_view s);       // str.title.

// str.strip / lstrip / rstrip: `chars` null means whitespace.
std::string Strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit): `sep` null splits on runs of whitespace.
std::vector<std::string> Split(std::string_view s, const std::string* sep, int64_t maxsplit);
std::vector<std::string> SplitLines(std::string_view s);
std::string Replace(std::string_view s, std::string_view old, std::string_view with, int64_t count);
// Count of non-overlapping occurrences, as str.count (an empty needle counts len + 1).
int64_t Count(std::string_view s, std::string_view needle);

}  // namespace iquest::jinja::text
