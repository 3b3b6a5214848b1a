// Turns decoded token pieces into text in a streaming way: raw byte pieces are UTF-8 decoded
// (invalid sequences become U+FFFD as in the WHATWG decoder), then the decoder's leading Strip and
// the tokenizer's clean_up_tokenization_spaces are applied. Decode() and the incremental
// detokenizer share this class, so streamed text always concatenates to the full decode.
#pragma once

#include <string>
#include <string_view>

namespace iquest {

struct DecodeOptions {
  // The Strip decoder: how many leading spaces the decoded text loses (Llama-2 style: 1).
  int strip_leading_spaces = 0;
  // transformers' clean_up_tokenization: " ." -> ".", " n't" -> "n't", and so on.
  bool clean_up_spaces = false;
};

class DecodeStream {
 public:
  explicit DecodeStream(const DecodeOptions& options)
      : options_(options), strip_left_(options.strip_leading_spaces) {}

  // Bytes of a byte-level or <0xNN> token; a UTF-8 sequence may span several of these pieces.
  void AddBytes(std::string_view bytes);
  // Text of a token that is decoded on its own (valid UTF-8); it ends any open byte sequence.
  void AddText(std::string_view text);

  // Appends to `out` the text no later piece can change.
  void TakeStable(std::string* out);
  // Ends the stream: appends all remaining text.
  void Finish(std::string* out);

 private:
  void DecodeBytes(bool at_end);
  void Append(std::string_view text);

  DecodeOptions options_;
  int strip_left_;
  std::string bytes_;    // Raw bytes not yet decoded: at most an incomplete UTF-8 sequence.
  std::string pending_;  // Decoded text not yet released (clean-up patterns may still match).
};

// transformers' clean_up_tokenization, applied pattern by pattern as the JavaScript and Python
// implementations do.
std::string CleanUpTokenization(std::string_view text);

}  // namespace iquest
