// UTF-8 decoding, WHATWG-style repair of invalid UTF-8, and the character classes the split
// pre-tokenizers use (\p{L}, \p{N} and JavaScript's \s), backed by utf8proc's Unicode 15 tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace iquest::unicode {

// U+FFFD, the replacement for every maximal invalid subsequence.
inline constexpr char32_t kReplacement = 0xFFFD;

// Decodes the code point at `text[pos]`. Returns its length in bytes, or 0 when the bytes there
// are not a complete, valid UTF-8 sequence (then *cp is unspecified).
size_t DecodeAt(std::string_view text, size_t pos, char32_t* cp);

// Length of the maximal subpart of an ill-formed sequence at `pos` (>= 1): the unit that the
// WHATWG decoder (TextDecoder, Node's Buffer) replaces with one U+FFFD.
size_t InvalidRunAt(std::string_view text, size_t pos);

void AppendUtf8(char32_t cp, std::string* out);

bool IsValidUtf8(std::string_view text);

// Replaces each maximal invalid subsequence with U+FFFD, exactly as the WHATWG decoder does, so
// our handling of invalid input matches what transformers.js sees after reading the bytes.
std::string RepairUtf8(std::string_view text);

// Number of trailing bytes that are a valid but incomplete UTF-8 prefix (0..3): the bytes a
// streaming decoder must hold back until more arrive.
size_t IncompleteTail(std::string_view text);

enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

// \p{L} -> kLetter, \p{N} -> kNumber, JavaScript \s -> kSpace (which includes U+FEFF), else
// kOther.
CharClass Classify(char32_t cp);

}  // namespace iquest::unicode
