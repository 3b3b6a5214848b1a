#include "kernels/cuda/gemm_sm90_plan.h"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled_v12000
#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "kernels/cuda/cuda_check.h"

namespace iquest::cuda::sm90_plan {
namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

PFN_cuTensorMapEncodeTiled_v12000 TensorMapEncoder() {
  // The runtime resolves the driver symbol; nothing links libcuda. Thread-safe static init.
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult query = cudaDriverEntryPointSymbolNotFound;
    CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                cudaEnableDefault, &query));
    CHECK(query == cudaDriverEntryPointSuccess && fn != nullptr)
        << "cuTensorMapEncodeTiled is not available from the driver";
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

}  // namespace

CUtensorMap MakeOperandMap(const void* base, int64_t rows, int64_t k, int box_rows, DType dtype) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(k), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides_bytes[1] = {static_cast<cuuint64_t>(k) * 2};  // of dim 1
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(kTileK), static_cast<cuuint32_t>(box_rows)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult result = TensorMapEncoder()(
      &map,
      dtype == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2,
      const_cast<void*>(base), dims, strides_bytes, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  CHECK(result == CUDA_SUCCESS) << "cuTensorMapEncodeTiled failed (" << static_cast<int>(result)
                                << ") rows=" << rows << " k=" << k << " box_rows=" << box_rows;
  return map;
}

Plan ChoosePlan(const GemmArgs& args, int num_sms) {
  Plan plan;
  plan.swap_ab = args.m < kTileP;
  if (plan.swap_ab) {
    // Tokens become wgmma's N: the smallest tile width that covers them.
    plan.tile_q = args.m <= 32 ? 32 : (args.m <= 64 ? 64 : 128);
    plan.rows_p = args.n;
    plan.rows_q = args.m;
  } else {
    // 128 x 256 tiles halve the operand traffic per flop of 128 x 128 ones, but give half as
    // many tiles. Pick the width with the shorter estimated time: waves of tiles, each wave
    // costing its tile's time, a 128 x 128 tile taking ~0.55 of a 128 x 256 one (it does
    // half the flops at a lower efficiency).
    const int64_t tiles_p = CeilDiv(args.m, kTileP);
    const int64_t waves_wide = CeilDiv(tiles_p * CeilDiv(args.n, 256), num_sms);
    const int64_t waves_narrow = CeilDiv(tiles_p * CeilDiv(args.n, 128), num_sms);
    plan.tile_q = 100 * waves_wide <= 55 * waves_narrow ? 256 : 128;
    plan.rows_p = args.m;
    plan.rows_q = args.n;
  }
  plan.tiles_p = CeilDiv(plan.rows_p, kTileP);
  plan.tiles_q = CeilDiv(plan.rows_q, plan.tile_q);
  plan.k_tiles = CeilDiv(args.k, kTileK);

  // Split K when the tiles leave at least half the SMs idle, keeping >= 4 K tiles per split
  // (the pipeline needs a few to reach steady state) and within the caller's workspace.
  const int64_t tiles = plan.tiles_p * plan.tiles_q;
  int64_t splits = 1;
  if (args.workspace != nullptr && 2 * tiles <= num_sms) {
    splits = std::min<int64_t>({num_sms / tiles, plan.k_tiles / 4, kMaxSplits});
    const size_t slice_bytes = static_cast<size_t>(args.m) * args.n * sizeof(float);
    while (splits > 1 && static_cast<size_t>(splits) * slice_bytes > args.workspace_bytes) {
      --splits;
    }
    splits = std::max<int64_t>(splits, 1);
  }
  plan.k_tiles_per_split = CeilDiv(plan.k_tiles, splits);
  plan.splits = CeilDiv(plan.k_tiles, plan.k_tiles_per_split);  // no empty split
  plan.num_sms = num_sms;
  return plan;
}

}  // namespace iquest::cuda::sm90_plan
