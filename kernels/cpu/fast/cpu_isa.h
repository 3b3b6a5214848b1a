// Which vector instruction set the fast CPU kernels use, picked at run time from CPUID so that
// one binary runs on any x86-64.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"

namespace iquest::cpu {

enum class CpuIsa {
  kAvx2,        // AVX2 + FMA + F16C (Haswell and later).
  kAvx512,      // AVX-512 F/BW/VL.
  kAvx512Bf16,  // AVX-512 plus AVX512_BF16 (VDPBF16PS): bf16 dot products for big GEMMs.
};

std::string_view CpuIsaName(CpuIsa isa);

// The best ISA this CPU and OS support, or kUnimplemented when not even AVX2 is there (the
// reference backend still runs everywhere).
absl::StatusOr<CpuIsa> DetectCpuIsa();

// "auto" (DetectCpuIsa), "avx2", "avx512", "avx512-bf16". Asking for more than the CPU has is an
// error that names what it lacks.
absl::StatusOr<CpuIsa> ResolveCpuIsa(std::string_view name);

}  // namespace iquest::cpu
