// SHA-256 (FIPS 180-4): the collision-resistant hash behind prefix-cache block keys (and, later,
// model manifests). Incremental: Update() any number of times, then Finish().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace iquest {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t num_bytes);
  Sha256Digest Finish();

 private:
  void Compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffer_bytes_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string ToHex(const Sha256Digest& digest);

}  // namespace iquest
