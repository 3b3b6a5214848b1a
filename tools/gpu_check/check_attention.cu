// Paged-attention rows of gpu-check (kernels/cuda/attention.cu).
//
// Correctness: each case is ONE PagedAttention call over a batch of sequences (decodes, prefill
// chunks with a cached prefix, sequences with no queries) on a paged cache whose block tables
// map to shuffled physical blocks, with random q/K/V and a poisoned output. It is compared with
// a float64 softmax-attention reference over the very K/V values the device holds (rounded to
// the cache dtype). Long cases check a sample of query rows (first, last and random ones) and
// of heads; every output element of every owned row must still be finite (written).
// Tolerances: a bf16 cache takes the tensor-core path, which also rounds q and the softmax
// weights P to bf16 (relative 2^-9 each, averaging out over the keys): 1e-2. An f32 (or f16)
// cache takes the SIMT path, all in f32 against the exact values: what is left is f32 rounding
// of the scores, exp2's 2 ulp and the order of f32 sums over <= 4k keys (~1e-6 .. 1e-5 of the
// output's scale), so 1e-4 leaves a 10x margin while still catching any wrong key or weight.
//
// Speed: decode at long context against the time the K and V bytes take at the measured copy
// bandwidth (min ratio 0.8), and a prefill row reported with its TFLOP/s (min ratio 0).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"
#include "kernels/kv_layout.h"
#include "tools/gpu_check/harness.h"

namespace iquest::gpu_check {
namespace {

struct Case {
  std::string name;
  int64_t num_heads = 32;
  int64_t num_kv_heads = 8;
  int64_t head_dim = 128;
  int64_t block_size = 16;
  DType dtype = DType::kBF16;
  std::vector<int> seq_lens;     // Context length per sequence (queries included).
  std::vector<int> query_lens;   // Query tokens per sequence: the last ones of its context.
  int rows_per_seq = 12;         // Query rows checked per sequence (all when fewer).
  int heads_checked = 0;         // Heads checked per row (0: all).
  int64_t workspace_limit = -1;  // Bytes of workspace handed over (-1: the full size).
  int64_t window = 0;            // Sliding window (0: full causal).
};

std::string Join(const std::vector<int>& values) {
  std::string text;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ",";
    text += std::to_string(values[i]);
  }
  return text;
}

// A batch on the device plus the host copies the reference needs.
struct Batch {
  int64_t num_seqs = 0;
  int64_t num_tokens = 0;
  int64_t max_blocks = 0;
  int64_t max_query_len = 0;
  int64_t max_seq_len = 0;
  std::vector<int32_t> query_start;
  std::vector<int32_t> block_table;  // [num_seqs, max_blocks]
  std::vector<float> q;              // [num_tokens, num_heads, head_dim]
  std::vector<float> k, v;           // The cache as the device holds it, widened to f32.
  PagedKvView kv;
  DeviceArray q_dev, out_dev, start_dev, lens_dev, table_dev, k_dev, v_dev, ws_dev;
  cuda::PagedAttentionArgs args;
};

// Builds the batch of `c`. With fill_random false the cache is set to one constant (the
// timing rows: values do not change the time, and every output must equal that constant).
void BuildBatch(const Case& c, std::mt19937_64& rng, bool fill_random, Batch& b) {
  b.num_seqs = static_cast<int64_t>(c.seq_lens.size());
  b.query_start.assign(1, 0);
  int64_t total_blocks = 4;  // Spare blocks that no sequence owns.
  for (int64_t s = 0; s < b.num_seqs; ++s) {
    CHECK(c.query_lens[s] >= 0 && c.query_lens[s] <= c.seq_lens[s]);
    b.query_start.push_back(b.query_start.back() + c.query_lens[s]);
    const int64_t blocks = (c.seq_lens[s] + c.block_size - 1) / c.block_size;
    b.max_blocks = std::max(b.max_blocks, blocks);
    total_blocks += blocks;
    b.max_query_len = std::max<int64_t>(b.max_query_len, c.query_lens[s]);
    b.max_seq_len = std::max<int64_t>(b.max_seq_len, c.seq_lens[s]);
  }
  b.max_blocks += 1;  // One column no sequence reaches.
  b.num_tokens = b.query_start.back();
  // Shuffled physical blocks; table entries past a sequence's end point at spare blocks.
  std::vector<int32_t> physical(static_cast<size_t>(total_blocks));
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  b.block_table.assign(static_cast<size_t>(b.num_seqs * b.max_blocks), physical[0]);
  size_t next = 4;
  for (int64_t s = 0; s < b.num_seqs; ++s) {
    const int64_t blocks = (c.seq_lens[s] + c.block_size - 1) / c.block_size;
    for (int64_t j = 0; j < blocks; ++j) b.block_table[s * b.max_blocks + j] = physical[next++];
  }

  PagedKvView& kv = b.kv;
  kv.dtype = c.dtype;
  kv.num_blocks = total_blocks;
  kv.block_size = c.block_size;
  kv.num_kv_heads = c.num_kv_heads;
  kv.head_dim = c.head_dim;
  const size_t cache_elems =
      static_cast<size_t>(total_blocks * c.num_kv_heads * c.block_size * c.head_dim);
  const size_t cache_bytes = cache_elems * DTypeSize(c.dtype);
  b.k_dev = DeviceArray(cache_bytes);
  b.v_dev = DeviceArray(cache_bytes);
  if (fill_random) {
    const auto k_bytes = ToDType(RandomFloats(cache_elems, rng), c.dtype);
    const auto v_bytes = ToDType(RandomFloats(cache_elems, rng), c.dtype);
    b.k_dev.Upload(k_bytes.data());
    b.v_dev.Upload(v_bytes.data());
    b.k = FromDType(k_bytes, c.dtype);
    b.v = FromDType(v_bytes, c.dtype);
  } else {
    CHECK(c.dtype == DType::kBF16);
    CUDA_CHECK(cudaMemset(b.k_dev.data(), 0x3e, cache_bytes));
    CUDA_CHECK(cudaMemset(b.v_dev.data(), 0x3e, cache_bytes));
  }
  kv.k = b.k_dev.data();
  kv.v = b.v_dev.data();

  // q scaled by 3 so that the softmax is far from uniform.
  b.q = RandomFloats(static_cast<size_t>(b.num_tokens * c.num_heads * c.head_dim), rng, 3.0f);
  b.q_dev = DeviceArray(std::max<size_t>(b.q.size(), 1) * sizeof(float));
  if (!b.q.empty()) b.q_dev.Upload(b.q.data());
  b.out_dev = DeviceArray(std::max<size_t>(b.q.size(), 1) * sizeof(float));
  b.start_dev = DeviceArray(b.query_start.size() * sizeof(int32_t));
  b.start_dev.Upload(b.query_start.data());
  std::vector<int32_t> lens(c.seq_lens.begin(), c.seq_lens.end());
  b.lens_dev = DeviceArray(lens.size() * sizeof(int32_t));
  b.lens_dev.Upload(lens.data());
  b.table_dev = DeviceArray(b.block_table.size() * sizeof(int32_t));
  b.table_dev.Upload(b.block_table.data());

  size_t ws_bytes =
      cuda::PagedAttentionWorkspaceBytes(b.num_tokens, c.num_heads, c.head_dim, b.max_seq_len);
  if (c.workspace_limit >= 0) ws_bytes = std::min(ws_bytes, static_cast<size_t>(c.workspace_limit));
  if (ws_bytes > 0) {
    b.ws_dev = DeviceArray(ws_bytes);
    b.ws_dev.Poison();
  }

  cuda::PagedAttentionArgs& a = b.args;
  a.q = b.q_dev.as<float>();
  a.out = b.out_dev.as<float>();
  a.query_start_loc = b.start_dev.as<int32_t>();
  a.seq_lens = b.lens_dev.as<int32_t>();
  a.block_tables = b.table_dev.as<int32_t>();
  a.num_tokens = b.num_tokens;
  a.num_seqs = b.num_seqs;
  a.num_heads = c.num_heads;
  a.max_blocks_per_seq = b.max_blocks;
  a.max_query_len = b.max_query_len;
  a.max_seq_len = b.max_seq_len;
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim)));
  a.window = c.window;
  a.workspace = ws_bytes > 0 ? b.ws_dev.data() : nullptr;
  a.workspace_bytes = ws_bytes;
}

// float64 attention of query row `row` (position `pos` of sequence `s`), head `h`.
void Reference(const Case& c, const Batch& b, int64_t s, int64_t row, int64_t pos, int64_t h,
               std::vector<double>& scores, double* out) {
  const int64_t group = c.num_heads / c.num_kv_heads;
  const int64_t kv_head = h / group;
  const float* q = b.q.data() + (row * c.num_heads + h) * c.head_dim;
  const int64_t first = c.window > 0 ? std::max<int64_t>(0, pos - c.window + 1) : 0;
  scores.assign(static_cast<size_t>(pos + 1), 0.0);
  auto offset = [&](int64_t p) {
    const int64_t block = b.block_table[s * b.max_blocks + p / c.block_size];
    return KvOffset(b.kv, block * c.block_size + p % c.block_size, kv_head, 0);
  };
  double max_score = -std::numeric_limits<double>::infinity();
  for (int64_t p = first; p <= pos; ++p) {
    const float* k = b.k.data() + offset(p);
    double dot = 0.0;
    for (int64_t d = 0; d < c.head_dim; ++d) dot += static_cast<double>(q[d]) * k[d];
    scores[p] = dot * static_cast<double>(b.args.scale);
    max_score = std::max(max_score, scores[p]);
  }
  double sum = 0.0;
  for (int64_t p = first; p <= pos; ++p) {
    scores[p] = std::exp(scores[p] - max_score);
    sum += scores[p];
  }
  for (int64_t d = 0; d < c.head_dim; ++d) out[d] = 0.0;
  for (int64_t p = first; p <= pos; ++p) {
    const float* v = b.v.data() + offset(p);
    const double weight = scores[p] / sum;
    for (int64_t d = 0; d < c.head_dim; ++d) out[d] += weight * v[d];
  }
}

std::vector<float> DownloadFloats(const DeviceArray& array, size_t count) {
  std::vector<float> host(std::max<size_t>(count, 1));
  array.Download(host.data());
  host.resize(count);
  return host;
}

// Runs case `c` once and compares it with the reference; adds its row.
void CheckCase(Context& ctx, const Case& c) {
  Batch b;
  BuildBatch(c, ctx.rng, /*fill_random=*/true, b);
  b.out_dev.Poison();
  cuda::PagedAttention(b.args, b.kv, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  const std::vector<float> out = DownloadFloats(b.out_dev, b.q.size());

  bool all_written = true;
  for (float value : out) all_written = all_written && std::isfinite(value);

  std::vector<float> ours;
  std::vector<double> ref;
  std::vector<double> scores, ref_row(static_cast<size_t>(c.head_dim));
  for (int64_t s = 0; s < b.num_seqs; ++s) {
    const int64_t num_queries = c.query_lens[s];
    if (num_queries == 0) continue;
    // Query rows to check: all, or the first, the last and random ones.
    std::vector<int64_t> rows;
    if (num_queries <= c.rows_per_seq) {
      for (int64_t i = 0; i < num_queries; ++i) rows.push_back(i);
    } else {
      rows = {0, num_queries - 1};
      std::uniform_int_distribution<int64_t> pick(1, num_queries - 2);
      while (static_cast<int>(rows.size()) < c.rows_per_seq) rows.push_back(pick(ctx.rng));
    }
    std::vector<int64_t> heads(static_cast<size_t>(c.num_heads));
    std::iota(heads.begin(), heads.end(), 0);
    if (c.heads_checked > 0 && c.heads_checked < c.num_heads) {
      std::shuffle(heads.begin(), heads.end(), ctx.rng);
      heads.resize(static_cast<size_t>(c.heads_checked));
    }
    for (int64_t i : rows) {
      const int64_t row = b.query_start[s] + i;
      const int64_t pos = c.seq_lens[s] - num_queries + i;
      for (int64_t h : heads) {
        Reference(c, b, s, row, pos, h, scores, ref_row.data());
        const float* got = out.data() + (row * c.num_heads + h) * c.head_dim;
        ours.insert(ours.end(), got, got + c.head_dim);
        ref.insert(ref.end(), ref_row.begin(), ref_row.end());
      }
    }
  }

  Row r;
  r.op = "attention " + std::string(DTypeName(c.dtype)) + " " + c.name;
  if (c.window > 0) r.op += " W=" + std::to_string(c.window);
  r.shape = "H=" + std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads) +
            " D=" + std::to_string(c.head_dim) + " bs=" + std::to_string(c.block_size) +
            " ctx=" + Join(c.seq_lens) + " q=" + Join(c.query_lens);
  if (r.shape.size() > 90) r.shape = r.shape.substr(0, 87) + "...";
  r.max_rel_err =
      all_written ? MaxRelativeError(ours, ref) : std::numeric_limits<double>::infinity();
  r.err_limit = c.dtype == DType::kBF16 && (c.head_dim == 64 || c.head_dim == 128) ? 1e-2 : 1e-4;
  r.ref_name = "f64 ref";
  ctx.report.Add(r);
}

// Decode (or prefill, when query_len > 1) timing on a constant cache: every output must equal
// the cache constant, which checks that all of it was written.
void TimeCase(Context& ctx, const Case& c, bool decode) {
  Batch b;
  BuildBatch(c, ctx.rng, /*fill_random=*/false, b);
  b.out_dev.Poison();
  cuda::PagedAttention(b.args, b.kv, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  const std::vector<float> out = DownloadFloats(b.out_dev, b.q.size());
  const double constant = Bf16ToFloat(0x3e3e);
  const std::vector<double> ref(out.size(), constant);

  Row r;
  r.shape = "B=" + std::to_string(b.num_seqs) + " ctx=" + std::to_string(c.seq_lens[0]) +
            " H=" + std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads) +
            " D=" + std::to_string(c.head_dim) + " bs=" + std::to_string(c.block_size);
  r.max_rel_err = MaxRelativeError(out, ref);
  r.err_limit = 1e-2;
  r.ours_us = MedianMicros([&] { cuda::PagedAttention(b.args, b.kv, ctx.stream); }, ctx.stream, 3,
                           ctx.quick ? 5 : 20);
  if (decode) {
    r.op = "attention decode bf16";
    // K and V of every context token, once per KV head.
    double bytes = 0;
    for (int len : c.seq_lens) {
      bytes += 2.0 * len * static_cast<double>(c.num_kv_heads * c.head_dim) * 2.0;
    }
    r.ref_name = "copy-bw";
    r.ref_us = BandwidthBoundMicros(bytes);
    r.min_ratio = 0.8;
  } else {
    r.op = "attention prefill bf16";
    // Causal: query at position p does 4 * head_dim flops per key 0..p, per head.
    double flops = 0;
    for (int64_t s = 0; s < b.num_seqs; ++s) {
      for (int i = 0; i < c.query_lens[s]; ++i) {
        const double pos = c.seq_lens[s] - c.query_lens[s] + i;
        flops += 4.0 * (pos + 1) * static_cast<double>(c.head_dim * c.num_heads);
      }
    }
    char tflops[32];
    std::snprintf(tflops, sizeof(tflops), " %.0fTFLOP/s", flops / (r.ours_us * 1e6));
    r.shape = "B=" + std::to_string(b.num_seqs) + " new=" + std::to_string(c.query_lens[0]) +
              " H=" + std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads) +
              " D=" + std::to_string(c.head_dim) + tflops;
    r.ref_name = "-";
    r.ref_us = 0;
    r.min_ratio = 0;
  }
  ctx.report.Add(r);
}

Case Make(const std::string& name, int64_t heads, int64_t kv_heads, int64_t head_dim,
          int64_t block_size, DType dtype, std::vector<int> seq_lens, std::vector<int> query_lens) {
  Case c;
  c.name = name;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.block_size = block_size;
  c.dtype = dtype;
  c.seq_lens = std::move(seq_lens);
  c.query_lens = std::move(query_lens);
  return c;
}

}  // namespace

void CheckAttention(Context& ctx) {
  const DType bf16 = DType::kBF16;
  const DType f32 = DType::kF32;
  std::vector<Case> cases;
  // Edge lengths.
  cases.push_back(Make("seq_len 1", 8, 8, 128, 16, bf16, {1}, {1}));
  cases.push_back(Make("block edges bs16", 32, 8, 128, 16, bf16, {15, 16, 17, 31, 32, 33, 17, 16},
                       {1, 1, 1, 1, 1, 1, 17, 16}));
  cases.push_back(
      Make("block edges bs8 G5", 40, 8, 64, 8, bf16, {7, 8, 9, 1, 9, 24}, {1, 1, 1, 1, 9, 8}));
  cases.push_back(
      Make("block edges bs32 G8", 64, 8, 128, 32, bf16, {31, 32, 33, 95, 33}, {1, 1, 1, 1, 33}));
  // One call mixing prefill chunks over a cached prefix, full prefills, decodes, a sequence
  // with no queries and a two-token chunk. The context splits into 2 partitions of 512: the
  // first chunk's rows sit on both sides of that edge (one partition or two to merge).
  cases.push_back(Make("mixed batch", 32, 8, 128, 16, bf16, {612, 70, 1000, 513, 2, 300, 130},
                       {200, 70, 1, 1, 1, 0, 2}));
  cases.push_back(
      Make("mixed batch G1 D64", 16, 16, 64, 32, bf16, {2000, 129, 65, 1}, {1, 64, 65, 1}));
  cases.push_back(Make("mixed batch G32", 32, 1, 128, 16, bf16, {700, 90}, {1, 20}));
  // 4k contexts, the 40B head shape: decodes and a prefill chunk at the end.
  Case long4k = Make("4k", 40, 8, 128, 16, bf16, {4096, 4095, 4097, 4096}, {1, 1, 1, 64});
  long4k.heads_checked = 10;
  cases.push_back(long4k);
  // The same with a workspace for 3 partitions of the 4 sequences' decode rows (the prefill
  // launch then has no room and runs unsplit), and with none (nothing split).
  long4k.name = "4k small workspace";
  long4k.workspace_limit = int64_t{4} * 40 * 3 * (128 + 2) * 4;
  cases.push_back(long4k);
  long4k.name = "4k no workspace";
  long4k.workspace_limit = 0;
  cases.push_back(long4k);
  // 32k: decodes and a 16-token chunk at the end of a 32k context; a sample of heads.
  Case long32k = Make("32k", 16, 2, 128, 16, bf16, {32768, 32769, 32768}, {1, 1, 16});
  long32k.rows_per_seq = 6;
  long32k.heads_checked = 6;
  if (!ctx.quick) cases.push_back(long32k);
  // f32 (and f16) caches: the SIMT path, compared tightly.
  cases.push_back(Make("mixed", 32, 8, 128, 16, f32, {4096, 1000, 17, 1}, {1, 32, 17, 1}));
  cases.push_back(Make("mixed G1 D64", 8, 8, 64, 8, f32, {513, 16, 9}, {1, 16, 9}));
  cases.push_back(Make("mixed G5 bs32", 40, 8, 128, 32, f32, {33, 300}, {1, 20}));
  cases.push_back(Make("mixed", 32, 4, 128, 16, DType::kF16, {700, 33}, {1, 33}));
  // bf16 outside the tensor-core kernel's shapes (head_dim 96): the SIMT path.
  cases.push_back(Make("D96 fallback", 16, 4, 96, 16, bf16, {300, 40}, {1, 40}));
  // Sliding windows (Mistral, the Loop model's local branch): windows shorter than a key tile,
  // than a block and than a partition, over contexts that split into partitions; prefill chunks
  // whose rows start their windows in different tiles and partitions.
  {
    Case w =
        Make("window", 32, 8, 128, 16, bf16, {612, 70, 1000, 513, 2, 130}, {200, 70, 1, 1, 1, 2});
    for (int64_t window : {1, 5, 64, 100, 700}) {
      w.window = window;
      cases.push_back(w);
    }
    Case w4k = Make("window 4k", 40, 8, 128, 16, bf16, {4096, 4097, 4096}, {1, 1, 64});
    w4k.window = 64;
    w4k.heads_checked = 10;
    cases.push_back(w4k);
    Case simt = Make("window", 32, 8, 128, 16, f32, {1000, 300, 17}, {1, 40, 17});
    simt.window = 33;
    cases.push_back(simt);
  }
  for (const Case& c : cases) CheckCase(ctx, c);

  // Speed. Decode: batch 8 at 32k (8k when quick), 8 KV heads, head_dim 128; the 40B shape.
  const int context = ctx.quick ? 8192 : 32768;
  const std::vector<int> decode_lens(8, context);
  const std::vector<int> decode_queries(8, 1);
  TimeCase(ctx, Make("", 32, 8, 128, 16, bf16, decode_lens, decode_queries), /*decode=*/true);
  if (!ctx.quick) {
    TimeCase(ctx, Make("", 40, 8, 128, 16, bf16, decode_lens, decode_queries), /*decode=*/true);
  }
  // Prefill: 4 sequences x 2048 new tokens (1024 when quick).
  const int new_tokens = ctx.quick ? 1024 : 2048;
  TimeCase(ctx,
           Make("", 32, 8, 128, 16, bf16, std::vector<int>(4, new_tokens),
                std::vector<int>(4, new_tokens)),
           /*decode=*/false);
}

}  // namespace iquest::gpu_check
