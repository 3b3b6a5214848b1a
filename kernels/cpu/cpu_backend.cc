#include "kernels/cpu/cpu_backend.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/ops.h"

namespace iquest {

absl::StatusOr<std::unique_ptr<DeviceBuffer>> CpuBackend::Allocate(size_t num_bytes) {
  // 64-byte alignment suits every vector width we use; aligned_alloc needs a multiple of it.
  constexpr size_t kAlignment = 64;
  const size_t rounded = (num_bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* data = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (data == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", num_bytes, " bytes"));
  }
  return std::make_unique<DeviceBuffer>(data, num_bytes, [](void* p) { std::free(p); });
}

void CpuBackend::CopyToDevice(const void* host, void* device, size_t num_bytes) {
  if (num_bytes > 0) std::memcpy(device, host, num_bytes);
}

void CpuBackend::CopyToHost(const void* device, void* host, size_t num_bytes) {
  if (num_bytes > 0) std::memcpy(host, device, num_bytes);
}

void CpuBackend::Embed(TensorView token_ids, TensorView table, TensorView out) {
  cpu::Embed(token_ids, table, out);
}
void CpuBackend::Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) {
  cpu::Gemm(a, w, bias, out);
}
void CpuBackend::RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps,
                         TensorView out) {
  cpu::RmsNorm(x, residual, weight, eps, out);
}
void CpuBackend::Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) {
  cpu::Rope(q, k, positions, inv_freq);
}
void CpuBackend::SiluMul(TensorView gate, TensorView up, TensorView out) {
  cpu::SiluMul(gate, up, out);
}
void CpuBackend::WriteKv(TensorView k, TensorView v, TensorView slot_mapping,
                         const PagedKvView& kv) {
  cpu::WriteKv(k, v, slot_mapping, kv);
}
void CpuBackend::CopyKvBlocks(TensorView pairs, const PagedKvView& kv) {
  cpu::CopyKvBlocks(pairs, kv);
}
void CpuBackend::PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                                TensorView out) {
  cpu::PagedAttention(q, kv, args, out);
}
void CpuBackend::Argmax(TensorView logits, TensorView out) { cpu::Argmax(logits, out); }

}  // namespace iquest
