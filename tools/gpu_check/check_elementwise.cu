// Element-wise rows of gpu-check: each op against a float64 CPU reference on fresh random
// inputs with poisoned outputs, and timed against the copy bandwidth (bytes read + written).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kernels/cuda/cuda_ops.h"
#include "tools/gpu_check/harness.h"

namespace iquest::gpu_check {
namespace {

std::vector<float> Download(const DeviceArray& array) {
  std::vector<float> host(array.num_bytes() / sizeof(float));
  array.Download(host.data());
  return host;
}

// An f32 or 16-bit output array, widened to f32.
std::vector<float> DownloadAs(const DeviceArray& array, DType dtype) {
  if (dtype == DType::kF32) return Download(array);
  std::vector<uint8_t> bytes(array.num_bytes());
  array.Download(bytes.data());
  return FromDType(bytes, dtype);
}

// The error limit of an output of `dtype` against float64: f32 arithmetic, or that plus one
// rounding to bf16 (a step of 2^-8 relative; the f32 result may sit across a rounding boundary
// from the float64 one).
double OutputErrLimit(DType dtype) { return dtype == DType::kF32 ? 1e-5 : 1.0 / 256; }

std::string OutSuffix(DType dtype) {
  return dtype == DType::kF32 ? "" : std::string(" ->") + std::string(DTypeName(dtype));
}

DeviceArray UploadFloats(const std::vector<float>& host) {
  DeviceArray array(host.size() * sizeof(float));
  array.Upload(host.data());
  return array;
}

// out_dtype f32, or bf16: the fused rounding of the GEMM's input (Backend::gemm_input_dtype).
void CheckRmsNorm(Context& ctx, int64_t tokens, int64_t hidden, DType out_dtype, bool timed) {
  const auto x = RandomFloats(static_cast<size_t>(tokens * hidden), ctx.rng);
  const auto residual = RandomFloats(x.size(), ctx.rng);
  const auto weight_bytes =
      ToDType(RandomFloats(static_cast<size_t>(hidden), ctx.rng), DType::kBF16);
  const auto weight = FromDType(weight_bytes, DType::kBF16);
  DeviceArray x_dev = UploadFloats(x), res_dev = UploadFloats(residual),
              out_dev(x.size() * DTypeSize(out_dtype));
  DeviceArray w_dev(weight_bytes.size());
  w_dev.Upload(weight_bytes.data());
  out_dev.Poison();
  const float eps = 1e-5f;
  cuda::RmsNorm(x_dev.as<float>(), res_dev.as<float>(), w_dev.data(), DType::kBF16, eps, tokens,
                hidden, out_dev.data(), out_dtype, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<double> ref_out(x.size()), ref_res(x.size());
  for (int64_t t = 0; t < tokens; ++t) {
    double sum = 0;
    for (int64_t h = 0; h < hidden; ++h) {
      const size_t i = static_cast<size_t>(t * hidden + h);
      ref_res[i] = static_cast<double>(x[i]) + residual[i];
      sum += ref_res[i] * ref_res[i];
    }
    const double inv = 1.0 / std::sqrt(sum / static_cast<double>(hidden) + eps);
    for (int64_t h = 0; h < hidden; ++h) {
      const size_t i = static_cast<size_t>(t * hidden + h);
      ref_out[i] = ref_res[i] * inv * weight[static_cast<size_t>(h)];
    }
  }
  Row row;
  row.op = "rms_norm+residual" + OutSuffix(out_dtype);
  row.shape = "T=" + std::to_string(tokens) + " H=" + std::to_string(hidden);
  // The residual stays f32 whatever out is, held to f32's limit (the bf16 one would hide a
  // residual wrongly rounded to bf16).
  const double res_err = MaxRelativeError(Download(res_dev), ref_res);
  row.max_rel_err = std::max(MaxRelativeError(DownloadAs(out_dev, out_dtype), ref_out),
                             res_err > 1e-5 ? 1.0 : res_err);
  row.err_limit = OutputErrLimit(out_dtype);
  row.ref_name = "copy-bw";
  if (timed) {
    row.ours_us = MedianMicros(
        [&] {
          cuda::RmsNorm(x_dev.as<float>(), res_dev.as<float>(), w_dev.data(), DType::kBF16, eps,
                        tokens, hidden, out_dev.data(), out_dtype, ctx.stream);
        },
        ctx.stream);
    // Reads x and residual, writes residual and out.
    row.ref_us = BandwidthBoundMicros(static_cast<double>(x.size()) *
                                      (3.0 * 4 + static_cast<double>(DTypeSize(out_dtype))));
    row.min_ratio = 0.8;
  }
  ctx.report.Add(row);
}

void CheckSiluMul(Context& ctx, int64_t count, DType out_dtype, bool timed) {
  const auto gate = RandomFloats(static_cast<size_t>(count), ctx.rng, 6.0f);
  const auto up = RandomFloats(gate.size(), ctx.rng);
  DeviceArray g = UploadFloats(gate), u = UploadFloats(up), out(gate.size() * DTypeSize(out_dtype));
  out.Poison();
  cuda::SiluMul(g.as<float>(), u.as<float>(), out.data(), out_dtype, count, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<double> ref(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    ref[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
  }
  Row row;
  row.op = "silu_mul" + OutSuffix(out_dtype);
  row.shape = "n=" + std::to_string(count);
  row.max_rel_err = MaxRelativeError(DownloadAs(out, out_dtype), ref);
  row.err_limit = OutputErrLimit(out_dtype);
  row.ref_name = "copy-bw";
  if (timed) {
    row.ours_us = MedianMicros(
        [&] {
          cuda::SiluMul(g.as<float>(), u.as<float>(), out.data(), out_dtype, count, ctx.stream);
        },
        ctx.stream);
    row.ref_us = BandwidthBoundMicros(static_cast<double>(count) *
                                      (2.0 * 4 + static_cast<double>(DTypeSize(out_dtype))));
    row.min_ratio = 0.8;
  }
  ctx.report.Add(row);
}

void CheckConvert(Context& ctx, int64_t count) {
  const auto in = RandomFloats(static_cast<size_t>(count), ctx.rng, 100.0f);
  DeviceArray in_dev = UploadFloats(in), out(static_cast<size_t>(count) * 2);
  out.Poison();
  cuda::ConvertFromF32(in_dev.as<float>(), out.data(), DType::kBF16, count, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<uint8_t> bytes(out.num_bytes());
  out.Download(bytes.data());
  // Round-to-nearest-even must match the host's FloatToBf16 bit for bit.
  const auto expected = ToDType(in, DType::kBF16);
  const bool exact = bytes == expected;
  Row row;
  row.op = "convert f32->bf16";
  row.shape = "n=" + std::to_string(count);
  row.max_rel_err = exact ? 0.0 : 1.0;
  row.err_limit = 0.0;
  row.ref_name = "copy-bw";
  row.ours_us = MedianMicros(
      [&] {
        cuda::ConvertFromF32(in_dev.as<float>(), out.data(), DType::kBF16, count, ctx.stream);
      },
      ctx.stream);
  row.ref_us = BandwidthBoundMicros(6.0 * static_cast<double>(count));
  row.min_ratio = 0.8;
  ctx.report.Add(row);
}

void CheckEmbed(Context& ctx, int64_t vocab, int64_t hidden, int64_t tokens) {
  const auto table_bytes =
      ToDType(RandomFloats(static_cast<size_t>(vocab * hidden), ctx.rng), DType::kBF16);
  const auto table = FromDType(table_bytes, DType::kBF16);
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(vocab - 1));
  for (int32_t& id : ids) id = pick(ctx.rng);
  ids[0] = 0;
  ids.back() = static_cast<int32_t>(vocab - 1);
  DeviceArray table_dev(table_bytes.size()), ids_dev(ids.size() * 4),
      out(static_cast<size_t>(tokens * hidden) * 4);
  table_dev.Upload(table_bytes.data());
  ids_dev.Upload(ids.data());
  out.Poison();
  cuda::Embed(ids_dev.as<int32_t>(), tokens, table_dev.data(), DType::kBF16, hidden,
              out.as<float>(), ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<float> ref;
  for (int32_t id : ids) {
    ref.insert(ref.end(), table.begin() + id * hidden, table.begin() + (id + 1) * hidden);
  }
  Row row;
  row.op = "embed bf16";
  row.shape = "T=" + std::to_string(tokens) + " H=" + std::to_string(hidden);
  row.max_rel_err = MaxRelativeError(Download(out), ref);
  row.err_limit = 0.0;
  row.ref_name = "copy-bw";
  row.ours_us = MedianMicros(
      [&] {
        cuda::Embed(ids_dev.as<int32_t>(), tokens, table_dev.data(), DType::kBF16, hidden,
                    out.as<float>(), ctx.stream);
      },
      ctx.stream);
  row.ref_us = BandwidthBoundMicros(6.0 * static_cast<double>(tokens * hidden));
  row.min_ratio = 0.8;
  ctx.report.Add(row);
}

void CheckArgmax(Context& ctx, int64_t rows, int64_t vocab) {
  auto logits = RandomFloats(static_cast<size_t>(rows * vocab), ctx.rng, 10.0f);
  // Ties: row 0's maximum appears twice (the lower index must win); row 1 has a NaN.
  if (rows >= 2) {
    logits[5] = 50.0f;
    logits[static_cast<size_t>(vocab - 1)] = 50.0f;
    logits[static_cast<size_t>(vocab + 7)] = std::nanf("");
  }
  DeviceArray in = UploadFloats(logits), out(static_cast<size_t>(rows) * 4);
  out.Poison();
  cuda::Argmax(in.as<float>(), rows, vocab, out.as<int32_t>(), ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  std::vector<int32_t> got(static_cast<size_t>(rows));
  out.Download(got.data());
  int64_t wrong = 0;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t best = -1;
    for (int64_t v = 0; v < vocab; ++v) {
      const float x = logits[static_cast<size_t>(r * vocab + v)];
      if (std::isnan(x)) continue;
      if (best < 0 || x > logits[static_cast<size_t>(r * vocab + best)]) best = v;
    }
    if (got[static_cast<size_t>(r)] != best) ++wrong;
  }
  Row row;
  row.op = "argmax";
  row.shape = "rows=" + std::to_string(rows) + " vocab=" + std::to_string(vocab);
  row.max_rel_err = static_cast<double>(wrong);
  row.err_limit = 0.0;
  row.ref_name = "copy-bw";
  row.ours_us = MedianMicros(
      [&] { cuda::Argmax(in.as<float>(), rows, vocab, out.as<int32_t>(), ctx.stream); },
      ctx.stream);
  row.ref_us = BandwidthBoundMicros(4.0 * static_cast<double>(rows * vocab));
  row.min_ratio = rows >= 64 ? 0.8 : 0.0;  // One row cannot fill the device.
  ctx.report.Add(row);
}

void CheckRopeWriteKv(Context& ctx, int64_t tokens, int64_t num_heads, int64_t num_kv_heads,
                      int64_t head_dim, int64_t block_size) {
  const int64_t num_blocks = (tokens + block_size - 1) / block_size + 3;
  const auto q = RandomFloats(static_cast<size_t>(tokens * num_heads * head_dim), ctx.rng);
  const auto k = RandomFloats(static_cast<size_t>(tokens * num_kv_heads * head_dim), ctx.rng);
  const auto v = RandomFloats(k.size(), ctx.rng);
  std::vector<int32_t> positions(static_cast<size_t>(tokens)), slots(static_cast<size_t>(tokens));
  std::uniform_int_distribution<int32_t> pos(0, 200000);
  for (auto& p : positions) p = pos(ctx.rng);
  // Distinct slots in a shuffled order; one token not stored (slot -1).
  std::vector<int32_t> all(static_cast<size_t>(num_blocks * block_size));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), ctx.rng);
  for (int64_t t = 0; t < tokens; ++t) slots[static_cast<size_t>(t)] = all[static_cast<size_t>(t)];
  slots[0] = -1;
  std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
  for (int64_t d = 0; d < head_dim / 2; ++d) {
    inv_freq[static_cast<size_t>(d)] =
        static_cast<float>(std::pow(500000.0, -2.0 * static_cast<double>(d) / head_dim));
  }
  DeviceArray q_dev = UploadFloats(q), k_dev = UploadFloats(k), v_dev = UploadFloats(v),
              freq_dev = UploadFloats(inv_freq), pos_dev(positions.size() * 4),
              slot_dev(slots.size() * 4);
  pos_dev.Upload(positions.data());
  slot_dev.Upload(slots.data());
  const size_t pool_elems = static_cast<size_t>(num_blocks * num_kv_heads * block_size * head_dim);
  DeviceArray k_cache(pool_elems * 2), v_cache(pool_elems * 2);
  k_cache.Poison();
  v_cache.Poison();
  PagedKvView kv;
  kv.k = k_cache.data();
  kv.v = v_cache.data();
  kv.dtype = DType::kBF16;
  kv.num_blocks = num_blocks;
  kv.block_size = block_size;
  kv.num_kv_heads = num_kv_heads;
  kv.head_dim = head_dim;
  cuda::RopeKvArgs args;
  args.q = q_dev.as<float>();
  args.k = k_dev.as<float>();
  args.v = v_dev.as<float>();
  args.positions = pos_dev.as<int32_t>();
  args.inv_freq = freq_dev.as<float>();
  args.slot_mapping = slot_dev.as<int32_t>();
  args.num_tokens = tokens;
  args.num_heads = num_heads;
  args.num_kv_heads = num_kv_heads;
  args.head_dim = head_dim;
  cuda::RopeWriteKv(args, kv, ctx.stream);
  CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
  // Reference: rotate in double, then the stored k (bf16) and v (bf16) at every stored slot.
  const int64_t half = head_dim / 2;
  auto rotate = [&](const std::vector<float>& x, int64_t heads) {
    std::vector<double> out(x.size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t d = 0; d < half; ++d) {
          const double angle = static_cast<double>(positions[static_cast<size_t>(t)]) *
                               static_cast<double>(inv_freq[static_cast<size_t>(d)]);
          const size_t i = static_cast<size_t>((t * heads + h) * head_dim + d);
          out[i] = x[i] * std::cos(angle) - x[i + half] * std::sin(angle);
          out[i + half] = x[i + half] * std::cos(angle) + x[i] * std::sin(angle);
        }
      }
    }
    return out;
  };
  const auto q_ref = rotate(q, num_heads);
  const auto k_ref = rotate(k, num_kv_heads);
  std::vector<uint8_t> k_bytes(k_cache.num_bytes()), v_bytes(v_cache.num_bytes());
  k_cache.Download(k_bytes.data());
  v_cache.Download(v_bytes.data());
  std::vector<float> k_stored, v_stored;
  std::vector<double> k_expected, v_expected;
  for (int64_t t = 1; t < tokens; ++t) {
    const int64_t slot = slots[static_cast<size_t>(t)];
    for (int64_t h = 0; h < num_kv_heads; ++h) {
      for (int64_t d = 0; d < head_dim; ++d) {
        const int64_t at = KvOffset(kv, slot, h, d);
        const size_t i = static_cast<size_t>((t * num_kv_heads + h) * head_dim + d);
        k_stored.push_back(Bf16ToFloat(reinterpret_cast<const uint16_t*>(k_bytes.data())[at]));
        v_stored.push_back(Bf16ToFloat(reinterpret_cast<const uint16_t*>(v_bytes.data())[at]));
        k_expected.push_back(k_ref[i]);
        v_expected.push_back(v[i]);
      }
    }
  }
  const std::string shape = "T=" + std::to_string(tokens) + " h=" + std::to_string(num_heads) +
                            "/" + std::to_string(num_kv_heads) + " d=" + std::to_string(head_dim);
  // q and k stay f32 (the angle and its sine come from double, as on the CPU).
  Row rotated;
  rotated.op = "rope q,k f32";
  rotated.shape = shape;
  rotated.max_rel_err =
      std::max(MaxRelativeError(Download(q_dev), q_ref), MaxRelativeError(Download(k_dev), k_ref));
  rotated.err_limit = 1e-5;
  rotated.ref_name = "float64";
  ctx.report.Add(rotated);
  // The cache holds one bf16 rounding of each value.
  Row row;
  row.op = "rope+kv_write bf16";
  row.shape = shape;
  row.max_rel_err =
      std::max(MaxRelativeError(k_stored, k_expected), MaxRelativeError(v_stored, v_expected));
  row.err_limit = 1e-2;
  row.ref_name = "copy-bw";
  // Timed without rotation state drift mattering (each run rotates again; only speed counts).
  row.ours_us = MedianMicros([&] { cuda::RopeWriteKv(args, kv, ctx.stream); }, ctx.stream);
  // q, k read + written (f32), v read (f32), k and v written to the cache (bf16).
  const double q_bytes = static_cast<double>(q.size()) * 8;
  const double kv_bytes = static_cast<double>(k.size()) * (8 + 4 + 2 + 2);
  row.ref_us = BandwidthBoundMicros(q_bytes + kv_bytes);
  row.min_ratio = tokens >= 1024 ? 0.8 : 0.0;
  ctx.report.Add(row);
}

}  // namespace

void CheckElementwise(Context& ctx) {
  for (DType out : {DType::kF32, DType::kBF16}) {
    CheckRmsNorm(ctx, 1, 4096, out, false);
    CheckRmsNorm(ctx, 3, 5121, out, false);  // Not a multiple of 4: the scalar path.
    CheckRmsNorm(ctx, 8192, 5120, out, true);
    CheckSiluMul(ctx, 1001, out, false);  // Odd: the scalar tail.
    CheckSiluMul(ctx, int64_t{8192} * 27648, out, true);
  }
  CheckConvert(ctx, int64_t{8192} * 5120 + 3);
  CheckEmbed(ctx, 128256, 4096, ctx.quick ? 512 : 8192);
  CheckArgmax(ctx, 1, 128256);
  CheckArgmax(ctx, 256, 128256);
  CheckRopeWriteKv(ctx, 5, 4, 2, 64, 16);
  CheckRopeWriteKv(ctx, 8192, 40, 8, 128, 16);
}

}  // namespace iquest::gpu_check
