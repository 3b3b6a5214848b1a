// The CPU reference ops, one file each (gemm.cc, embed.cc, ...). Written for clarity: f32
// arithmetic, plain loops, every precondition CHECKed. Shapes are documented in
// kernels/backend.h; fast paths live elsewhere and are tested against these. Gemm's `a` and
// RmsNorm's and SiluMul's `out` may be of any float dtype (a GPU backend's gemm_input_dtype):
// computed in f32, rounded to nearest even once on the store, widened exactly on the load.
#pragma once

#include "kernels/backend.h"

namespace iquest::cpu {

void Embed(TensorView token_ids, TensorView table, TensorView out);
void Gemm(TensorView a, TensorView w, TensorView bias, TensorView out);
void RmsNorm(TensorView x, TensorView residual, TensorView weight, float eps, TensorView out);
void Rope(TensorView q, TensorView k, TensorView positions, TensorView inv_freq);
void SiluMul(TensorView gate, TensorView up, TensorView out);
void WriteKv(TensorView k, TensorView v, TensorView slot_mapping, const PagedKvView& kv);
void CopyKvBlocks(TensorView pairs, const PagedKvView& kv);
// CHECKs PagedAttention's shapes and per-sequence bounds; shared by every CPU implementation.
void CheckAttentionArgs(TensorView q, const PagedKvView& kv, const AttentionArgs& args,
                        TensorView out);
void PagedAttention(TensorView q, const PagedKvView& kv, const AttentionArgs& args, TensorView out);
void Argmax(TensorView logits, TensorView out);
// CHECKs GatedAttentionMix's shapes; shared by the CPU implementations.
void CheckGatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                            TensorView global, TensorView local, TensorView out);
void GatedAttentionMix(TensorView q, TensorView gate_weight, TensorView gate_bias,
                       TensorView global, TensorView local, TensorView out);

}  // namespace iquest::cpu
