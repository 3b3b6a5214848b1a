#include "kernels/cpu/fast/fast_cpu_backend.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "kernels/cpu/fast/quant_gemm.h"
#include "kernels/cpu/ops.h"

namespace iquest::cpu {
namespace {

// Bytes compared at each end of a weight to recognise it.
constexpr size_t kFingerprintBytes = 64;
// Query rows per attention task: long prefill chunks are split so that both threads get work.
constexpr int32_t kAttentionRowsPerTask = 16;

std::vector<uint8_t> Bytes(const void* data, size_t offset, size_t count) {
  const uint8_t* begin = static_cast<const uint8_t*>(data) + offset;
  return std::vector<uint8_t>(begin, begin + count);
}

// Splits `num_rows` rows of a [rows, ...] view into per-thread slices of whole rows.
TensorView RowSlice(TensorView view, int64_t begin, int64_t end) {
  return view.Rows(begin, end - begin);
}

}  // namespace

FastCpuBackend::FastCpuBackend(CpuIsa isa, int num_threads)
    : isa_(isa),
      name_(absl::StrCat("cpu-", std::string(CpuIsaName(isa)), "-x", num_threads)),
      pool_(num_threads) {}

void FastCpuBackend::PrepareGemmWeight(TensorView w) {
  if (!CanPack(w) || FindPacked(w) != nullptr) return;
  PackedEntry entry;
  entry.source = w;
  const size_t count = std::min(kFingerprintBytes, w.num_bytes());
  entry.head = Bytes(w.data(), 0, count);
  entry.tail = Bytes(w.data(), w.num_bytes() - count, count);
  entry.packed = PackWeight(w, pool_);
  packed_[w.data()] = std::move(entry);
}

const PackedWeight* FastCpuBackend::FindPacked(TensorView w) const {
  const auto it = packed_.find(w.data());
  if (it == packed_.end()) return nullptr;
  const PackedEntry& e = it->second;
  if (e.source.dtype() != w.dtype() || e.source.rank() != 2 || w.rank() != 2 ||
      e.source.dim(0) != w.dim(0) || e.source.dim(1) != w.dim(1)) {
    return nullptr;
  }
  const size_t count = e.head.size();
  if (std::memcmp(e.head.data(), w.data(), count) != 0 ||
      std::memcmp(e.tail.data(), static_cast<const uint8_t*>(w.data()) + w.num_bytes() - count,
                  count) != 0) {
    return nullptr;
  }
  return e.packed.get();
}

void FastCpuBackend::Embed(TensorView token_ids, TensorView table, TensorView out) {
  cpu::Embed(token_ids, table, out);
}

void FastCpuBackend::Gemm(TensorView a, TensorView w, TensorView bias, TensorView out) {
  if (IsQuantized(w.dtype()) && a.dtype() == DType::kF32) {
    QuantGemm(a, w, out);
    AddBias(bias, out);
    return;
  }
  const PackedWeight* packed = FindPacked(w);
  if (packed == nullptr || a.dtype() != DType::kF32) {
    // Not prepared (or not packable), or a 16-bit `a`: the reference op, correct but slow.
    cpu::Gemm(a, w, bias, out);
    return;
  }
  const int64_t m_size = a.dim(0);
  CHECK_EQ(a.dim(1), packed->k);
  CHECK(out.ShapeIs({m_size, packed->n})) << out.ShapeString();
  CHECK(bias.empty() || bias.ShapeIs({packed->n})) << bias.ShapeString();
  if (m_size == 0) return;
  GemmArgs args;
  args.a = a.as<float>();
  args.m = m_size;
  args.w = packed;
  args.out = out.as<float>();
  void (*kernel)(const GemmArgs&, int64_t, int64_t) =
      isa_ == CpuIsa::kAvx2 ? GemmPanelsAvx2 : GemmPanelsAvx512;
  if (isa_ == CpuIsa::kAvx512Bf16 && packed->dtype == DType::kBF16 && m_size >= kBf16DotMinRows) {
    const size_t count = static_cast<size_t>(PackedBf16PairsSize(m_size, packed->k));
    if (a_pairs_.size() < count) a_pairs_.resize(count);
    const int64_t num_blocks = (m_size + kDotBlockRows - 1) / kDotBlockRows;
    pool_.ParallelFor(num_blocks, [&](int64_t begin, int64_t end) {
      PackRowsBf16Pairs(args.a, m_size, packed->k, begin * kDotBlockRows,
                        std::min(m_size, end * kDotBlockRows), a_pairs_.data());
    });
    args.a_pairs = a_pairs_.data();
    kernel = GemmPanelsAvx512Bf16Dot;
  }
  // Chunks of whole panel pairs (the kernels' unit), each a contiguous weight stream.
  pool_.ParallelForGuided(packed->num_panels, 2,
                          [&](int64_t begin, int64_t end) { kernel(args, begin, end); });
  AddBias(bias, out);
}

void FastCpuBackend::AddBias(TensorView bias, TensorView out) {
  if (bias.empty()) return;
  const int64_t n_size = out.dim(1);
  float* data = out.as<float>();
  pool_.ParallelFor(out.dim(0), [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      for (int64_t n = 0; n < n_size; ++n) {
        data[m * n_size + n] += LoadAsFloat(bias.data(), bias.dtype(), n);
      }
    }
  });
}

void FastCpuBackend::QuantGemm(TensorView a, TensorView w, TensorView out) {
  const int64_t m_size = a.dim(0);
  QuantGemmArgs args;
  args.type = *QuantTypeOf(w.dtype());
  args.w = static_cast<const uint8_t*>(w.data());
  args.n = w.dim(0);
  args.k = w.dim(1);
  args.row_bytes = DTypeBytes(w.dtype(), args.k);
  args.a = a.as<float>();
  args.m = m_size;
  args.out = out.as<float>();
  CHECK_EQ(a.dim(1), args.k);
  CHECK(out.ShapeIs({m_size, args.n})) << out.ShapeString();
  if (m_size == 0) return;
  const bool avx2 = isa_ == CpuIsa::kAvx2;
  if (m_size <= kQuantRowDotMaxRows) {
    // Decode: each weight row once, its blocks dequantized in L1 and dotted with every row.
    const int64_t num_tiles = (args.n + kQuantRowTile - 1) / kQuantRowTile;
    pool_.ParallelForGuided(num_tiles, 4, [&](int64_t begin, int64_t end) {
      const int64_t n_begin = begin * kQuantRowTile;
      const int64_t n_end = std::min(args.n, end * kQuantRowTile);
      if (avx2) {
        avx2::QuantGemmRows(args, n_begin, n_end);
      } else {
        avx512::QuantGemmRows(args, n_begin, n_end);
      }
    });
    return;
  }
  // Prefill: a pair of panels at a time (the AVX-512 kernel's unit) dequantized into per-thread
  // scratch, then the f32 panel kernels over every row of `a`.
  const int64_t num_panels = (args.n + kPanelWidth - 1) / kPanelWidth;
  pool_.ParallelForGuided(num_panels, 2, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(2 * kPanelWidth * args.k));
    // The scratch seen as the packed panels [first_panel, first_panel + 2) of an f32 weight.
    PackedWeight window;
    window.dtype = DType::kF32;
    window.n = args.n;
    window.k = args.k;
    window.num_panels = num_panels;
    window.panel_bytes = static_cast<size_t>(kPanelWidth * args.k) * sizeof(float);
    window.data = std::unique_ptr<uint8_t, void (*)(void*)>(
        reinterpret_cast<uint8_t*>(scratch.data()), [](void*) {});
    for (int64_t p = begin; p < end; p += 2) {
      const int64_t last = std::min(end, p + 2);
      window.first_panel = p;
      for (int64_t q = p; q < last; ++q) {
        float* panel = scratch.data() + (q - p) * kPanelWidth * args.k;
        if (avx2) {
          avx2::DequantizePanel(args, q, panel);
        } else {
          avx512::DequantizePanel(args, q, panel);
        }
      }
      GemmArgs gemm;
      gemm.a = args.a;
      gemm.m = m_size;
      gemm.w = &window;
      gemm.out = args.out;
      if (avx2) {
        GemmPanelsAvx2(gemm, p, last);
      } else {
        GemmPanelsAvx512(gemm, p, last);
      }
    }
  });
}

void FastCpuBackend::RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps,
                             TensorView out) {
  // Rows are independent: each thread runs the reference op on its slice.
  pool_.ParallelFor(x.dim(0), [&](int64_t begin, int64_t end) {
    cpu::RmsNorm(RowSlice(x, begin, end),
                 residual.empty() ? TensorView() : RowSlice(residual, begin, end), weight, eps,
                 RowSlice(out, begin, end));
  });
}

void FastCpuBackend::Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq) {
  pool_.ParallelFor(q.dim(0), [&](int64_t begin, int64_t end) {
    cpu::Rope(RowSlice(q, begin, end), RowSlice(k, begin, end), RowSlice(positions, begin, end),
              inv_freq);
  });
}

void FastCpuBackend::SiluMul(TensorView gate, TensorView up, TensorView out) {
  CHECK_EQ(gate.numel(), up.numel());
  CHECK_EQ(gate.numel(), out.numel());
  if (out.dtype() != DType::kF32) {
    cpu::SiluMul(gate, up, out);  // The vector kernels write f32 only (see the header).
    return;
  }
  const float* g = gate.as<float>();
  const float* u = up.as<float>();
  float* o = out.as<float>();
  // Chunks of whole cache lines so that threads never share one.
  constexpr int64_t kChunk = 1024;
  const int64_t num_chunks = (gate.numel() + kChunk - 1) / kChunk;
  const int64_t numel = gate.numel();
  const bool avx2 = isa_ == CpuIsa::kAvx2;
  pool_.ParallelFor(num_chunks, [&](int64_t begin, int64_t end) {
    const int64_t first = begin * kChunk;
    const int64_t last = std::min(numel, end * kChunk);
    if (avx2) {
      avx2::SiluMul(g, u, o, first, last);
    } else {
      avx512::SiluMul(g, u, o, first, last);
    }
  });
}

void FastCpuBackend::WriteKv(TensorView k, TensorView v, TensorView slot_mapping,
                             const PagedKvView& kv) {
  // Every token has its own slot, so the tokens split over the pool without overlapping writes.
  pool_.ParallelFor(k.dim(0), [&](int64_t begin, int64_t end) {
    cpu::WriteKv(RowSlice(k, begin, end), RowSlice(v, begin, end),
                 RowSlice(slot_mapping, begin, end), kv);
  });
}

void FastCpuBackend::CopyKvBlocks(TensorView pairs, const PagedKvView& kv) {
  cpu::CopyKvBlocks(pairs, kv);
}

void FastCpuBackend::PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                                    TensorView out) {
  if (kv.dtype != DType::kF32) {
    cpu::PagedAttention(q, kv, args, out);  // A 16-bit cache takes the reference path.
    return;
  }
  cpu::CheckAttentionArgs(q, kv, args, out);
  const int64_t num_heads = q.dim(1);
  const int64_t num_seqs = args.seq_lens.dim(0);
  const int32_t* query_start = args.query_start_loc.as<int32_t>();
  attention_tasks_.clear();
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int32_t num_queries = query_start[s + 1] - query_start[s];
    for (int32_t h = 0; h < kv.num_kv_heads; ++h) {
      for (int32_t r = 0; r < num_queries; r += kAttentionRowsPerTask) {
        attention_tasks_.push_back(AttentionTask{static_cast<int32_t>(s), h, r,
                                                 std::min(num_queries, r + kAttentionRowsPerTask)});
      }
    }
  }
  const bool avx2 = isa_ == CpuIsa::kAvx2;
  const float* q_data = q.as<float>();
  float* out_data = out.as<float>();
  // Tasks differ in cost (context lengths): guided chunks balance them.
  pool_.ParallelForGuided(static_cast<int64_t>(attention_tasks_.size()), 1,
                          [&](int64_t begin, int64_t end) {
                            if (avx2) {
                              avx2::AttentionTasks(q_data, kv, args, num_heads,
                                                   attention_tasks_.data(), begin, end, out_data);
                            } else {
                              avx512::AttentionTasks(q_data, kv, args, num_heads,
                                                     attention_tasks_.data(), begin, end, out_data);
                            }
                          });
}

// O(T x heads x head_dim) next to attention's O(T x keys x ...): the reference op, split by
// token rows across the pool.
void FastCpuBackend::GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                                       TensorView global, TensorView local, TensorView out) {
  cpu::CheckGatedAttentionMix(q, gate_weight, gate_bias, global, local, out);
  pool_.ParallelFor(q.dim(0), [&](int64_t begin, int64_t end) {
    cpu::GatedAttentionMix(RowSlice(q, begin, end), gate_weight, gate_bias,
                           RowSlice(global, begin, end), RowSlice(local, begin, end),
                           RowSlice(out, begin, end));
  });
}

void FastCpuBackend::Argmax(TensorView logits, TensorView out) {
  pool_.ParallelFor(logits.dim(0), [&](int64_t begin, int64_t end) {
    cpu::Argmax(RowSlice(logits, begin, end), RowSlice(out, begin, end));
  });
}

void FastCpuBackend::SampleTokens(TensorView logits, std::span<const SampleRow> rows,
                                  std::span<SampledId> out) {
  CHECK_EQ(rows.size(), out.size());
  pool_.ParallelFor(static_cast<int64_t>(rows.size()), [&](int64_t begin, int64_t end) {
    thread_local TokenDrawer drawer;  // Vocabulary-sized scratch, kept per pool thread.
    const auto first = static_cast<size_t>(begin), count = static_cast<size_t>(end - begin);
    SampleRows(logits, rows.subspan(first, count), out.subspan(first, count), drawer);
  });
}

}  // namespace iquest::cpu
