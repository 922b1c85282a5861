// The hooks through which the generic kernel bodies (eval.h, train.h, ...)
// hand work to an instruction set's own paths, in their portable form: every
// try_* declines and the row moves are plain loops. An ISA with paths of its
// own defines the same names in its folder (avx512/hooks.h); isa_hooks.h picks
// the set for the translation unit being compiled.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/checks.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace hooks {

// ----------------------------------------------------------- row moves ----

// Copies a rows x cols block between element types; the gap between dst rows
// (dst_pitch > cols) may be overwritten with zeros: every caller's gap is
// zero padding or dropped flat outputs.
template <typename src_t, typename dst_t>
inline void copy_block(const src_t* src, int64_t src_pitch, int64_t rows, int64_t cols, dst_t* dst,
                       int64_t dst_pitch) {
  copy_rows(src, src_pitch, rows, cols, dst, dst_pitch);
}

// dst[r, c] = a * src[r, c] + b; the gap between dst rows is left alone.
template <typename scalar_t, typename acc_t>
inline void affine_block(const acc_t* src, int64_t src_pitch, int64_t rows, int64_t cols, scalar_t* dst,
                         int64_t dst_pitch, acc_t a, acc_t b) {
  affine_rows(src, src_pitch, rows, cols, dst, dst_pitch, a, b);
}

// b[j * rows + i] = a[i * cols + j] for the tile i0 <= i < i0 + ri,
// j0 <= j < j0 + cj (ri, cj <= 16; both 16 when Full).
template <bool Full>
inline void transpose_tile(const float* a, int64_t rows, int64_t cols, int64_t i0, int64_t j0, int64_t ri,
                           int64_t cj, float* b) {
  if constexpr (Full) ri = cj = 16;
  transpose_rows(a, rows, cols, i0, j0, ri, cj, b);
}

// ---------------------------------------------------------------- eval ----

// The whole NCHW eval op; false: the generic flat kernel runs.
template <typename scalar_t>
inline bool try_eval(const EvalParams&) {
  return false;
}

// The whole channels_last eval op, given the folded taps (tap-major,
// taps[t * C + c] for input channel c), the shift per input channel and the
// input channel of each output channel; false: the generic kernel runs.
template <typename scalar_t, typename acc_t>
inline bool try_eval_channels_last(const EvalParams&, const acc_t*, const acc_t*, const std::vector<int32_t>&) {
  return false;
}

// ------------------------------------------------- training and backward ----

// What an ISA precomputes once per call for its lane paths (nullptr: none).
struct LanePlan;
inline std::shared_ptr<const LanePlan> lane_plan(const ConvGeometry&) { return nullptr; }

// Whether the lane paths below always take a lane of this kind (they then
// stage nothing, so the generic kernels allocate no staging buffers).
template <int K, int S, typename scalar_t, typename acc_t>
constexpr bool lanes_in_place() {
  return false;
}

// The conv of all N planes of input channel `input` with the K*K taps `w`
// into zc (plane n at zc + n * z_pitch); false: the generic flat conv runs.
template <int K, int S, typename scalar_t, typename acc_t>
inline bool try_conv_lane(const LanePlan*, const scalar_t*, const ConvGeometry&, int64_t, const acc_t*, acc_t*,
                          int64_t) {
  return false;
}

// The backward of one lane given its dz (N x Ho x Wo): gw += the conv-weight
// gradient, and grad_x's planes of channel `input` = the conv of dz with the
// flipped taps; false: the generic flat backward runs.
template <int K, int S, typename scalar_t, typename acc_t>
inline bool try_backward_lane(const LanePlan*, const acc_t*, const scalar_t*, const ConvGeometry&, int64_t,
                              const acc_t*, double*, scalar_t*) {
  return false;
}

}  // namespace hooks
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
