#include "engine/stop_strings.h"

#include <algorithm>

namespace iquest {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings) {
  for (std::string& stop : stop_strings) {
    if (!stop.empty()) stop_strings_.push_back(std::move(stop));  // The server rejects "".
  }
}

std::string StopStringMatcher::Append(std::string_view text, bool& matched) {
  matched = matched_;
  if (matched_) return "";
  pending_.append(text);
  // The earliest match among all stop strings wins.
  size_t first = std::string::npos;
  for (const std::string& stop : stop_strings_) first = std::min(first, pending_.find(stop));
  if (first != std::string::npos) {
    matched = matched_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that could still grow into a stop string.
  size_t hold = 0;
  for (const std::string& stop : stop_strings_) {
    for (size_t len = std::min(stop.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  size_t release = pending_.size() - hold;
  // Never split a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
  while (release > 0 && (static_cast<unsigned char>(pending_[release]) & 0xc0) == 0x80) --release;
  std::string out = pending_.substr(0, release);
  pending_.erase(0, release);
  return out;
}

std::string StopStringMatcher::Flush() {
  std::string out = matched_ ? "" : pending_;
  pending_.clear();
  return out;
}

}  // namespace iquest
