// Streaming text and stop strings. The engine turns each sample's tokens into text through a
// TextStream (the tokenizer's incremental detokenizer) and watches that text for stop strings.
// Text that might be the start of a stop string is held back until it is known not to be, so a
// client never receives part of a stop string; the matched stop string itself is not emitted.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/request.h"

namespace iquest {

// Incremental detokenization: Push returns only complete UTF-8 text.
class TextStream {
 public:
  virtual ~TextStream() = default;
  virtual std::string Push(int32_t token) = 0;
  virtual std::string Flush() = 0;  // Whatever is still buffered, at the end.
};
// Makes one stream per sample; the params carry skip_special_tokens.
using TextStreamFactory = std::function<std::unique_ptr<TextStream>(const SamplingParams&)>;

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  // Adds `text`; returns the text that is now safe to emit. Sets `matched` when a stop string
  // was found: the returned text then ends just before it, and later calls return nothing.
  std::string Append(std::string_view text, bool& matched);
  // The held-back text, once generation ended without a match.
  std::string Flush();

 private:
  std::vector<std::string> stop_strings_;
  std::string pending_;
  bool matched_ = false;
};

}  // namespace iquest
