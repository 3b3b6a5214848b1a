// The random values of FillRandom, one pure function of (seed, element index), written once for
// the host and the device so that every backend fills a tensor with the same values: a random
// model built on the GPU equals the one built on the CPU bit for bit.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define IQUEST_HOST_DEVICE __host__ __device__
#else
#define IQUEST_HOST_DEVICE
#endif

namespace iquest {

// splitmix64's finalizer over seed and index: independent-looking 64-bit values per element.
IQUEST_HOST_DEVICE inline uint64_t MixBits(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-scale, scale): 24 random bits, exact in f32.
IQUEST_HOST_DEVICE inline float RandomUniform(uint64_t seed, uint64_t index, float scale) {
  const float unit = static_cast<float>(MixBits(seed, index) >> 40) * (1.0f / 16777216.0f);
  return (2.0f * unit - 1.0f) * scale;
}

}  // namespace iquest
