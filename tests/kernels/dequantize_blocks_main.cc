// Test helper for ggml_quant_test.py: dequantizes raw blocks with kernels/quant/ggml_quant.
//   dequantize_blocks TYPE IN OUT    (TYPE: q4_0, q8_0, q4_k, q5_k or q6_k)
// IN holds whole blocks; OUT receives their weights as little-endian f32. Exit 1 on bad input.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "kernels/quant/ggml_quant.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s TYPE IN OUT\n", argv[0]);
    return 1;
  }
  const std::optional<iquest::QuantType> type = iquest::QuantTypeFromName(argv[1]);
  if (!type) {
    std::fprintf(stderr, "unknown type %s\n", argv[1]);
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  const std::vector<uint8_t> blocks((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
  const iquest::QuantLayout layout = iquest::LayoutOf(*type);
  if (blocks.empty() || blocks.size() % layout.block_bytes != 0) {
    std::fprintf(stderr, "%zu bytes are not whole %s blocks\n", blocks.size(), argv[1]);
    return 1;
  }
  const int64_t num_elements =
      static_cast<int64_t>(blocks.size()) / layout.block_bytes * layout.block_elements;
  std::vector<float> out(num_elements);
  iquest::Dequantize(*type, blocks.data(), num_elements, out.data());
  std::ofstream(argv[3], std::ios::binary)
      .write(reinterpret_cast<const char*>(out.data()), out.size() * sizeof(float));
  return 0;
}
