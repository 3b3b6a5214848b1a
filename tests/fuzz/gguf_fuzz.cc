// libFuzzer: the GGUF reader on arbitrary bytes. Parsed files are walked whole (every metadata
// value through its accessor, every array element, every tensor's first and last byte), so a
// count, offset or length the reader failed to bound shows up under ASan.
#include <cstddef>
#include <cstdint>

#include "model/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto contents = iquest::ParseGguf(data, size, "fuzz.gguf");
  if (!contents.ok()) return 0;
  volatile double sink = 0;
  for (const auto& [key, value] : contents->metadata) {
    if (value.IsInteger()) sink = sink + static_cast<double>(value.AsInt());
    if (value.IsFloat()) sink = sink + value.AsFloat();
    sink = sink + static_cast<double>(value.string.size());
    if (value.type != iquest::GgufValueType::kArray) continue;
    for (std::string_view s : value.strings) sink = sink + (s.empty() ? 0 : s.back());
    if (value.element_type == iquest::GgufValueType::kString) continue;
    // Numeric arrays: read the first and the last element.
    if (value.count > 0) {
      iquest::GgufValue element = value;
      element.type = value.element_type;
      if (element.IsInteger()) {
        sink = sink + static_cast<double>(value.AsInt(0)) +
               static_cast<double>(value.AsInt(value.count - 1));
      } else if (element.IsFloat()) {
        sink = sink + value.AsFloat(0) + value.AsFloat(value.count - 1);
      }
    }
  }
  for (const iquest::GgufTensor& t : contents->tensors) {
    if (t.num_bytes > 0) sink = sink + (t.data[0] ^ t.data[t.num_bytes - 1]);
  }
  (void)sink;
  return 0;
}
