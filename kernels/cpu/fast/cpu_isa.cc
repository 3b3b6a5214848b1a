#include "kernels/cpu/fast/cpu_isa.h"

#include <cpuid.h>

#include "absl/strings/str_cat.h"

namespace iquest::cpu {
namespace {

// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool HasF16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
}

// __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
bool HasAvx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c();
}
bool HasAvx512() {
  return HasAvx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}
bool HasAvx512Bf16() { return HasAvx512() && __builtin_cpu_supports("avx512bf16"); }

bool Supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx2:
      return HasAvx2();
    case CpuIsa::kAvx512:
      return HasAvx512();
    case CpuIsa::kAvx512Bf16:
      return HasAvx512Bf16();
  }
  return false;
}

}  // namespace

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512-bf16";
  }
  return "unknown";
}

absl::StatusOr<CpuIsa> DetectCpuIsa() {
  __builtin_cpu_init();
  if (HasAvx512Bf16()) return CpuIsa::kAvx512Bf16;
  if (HasAvx512()) return CpuIsa::kAvx512;
  if (HasAvx2()) return CpuIsa::kAvx2;
  return absl::UnimplementedError("this CPU lacks AVX2/FMA/F16C; use --cpu-kernels=reference");
}

absl::StatusOr<CpuIsa> ResolveCpuIsa(std::string_view name) {
  __builtin_cpu_init();
  if (name == "auto") return DetectCpuIsa();
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (name != CpuIsaName(isa)) continue;
    if (!Supports(isa)) {
      return absl::FailedPreconditionError(
          absl::StrCat("--cpu-kernels=", std::string(name), ": this CPU does not support it"));
    }
    return isa;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--cpu-kernels must be one of auto, reference, avx2, avx512, avx512-bf16; got ",
                   std::string(name)));
}

}  // namespace iquest::cpu
