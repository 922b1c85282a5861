// The AVX-512 paths behind the hooks of the generic kernel bodies (the
// portable forms and what each hook does: portable_hooks.h). AVX-512 takes
// float32, bfloat16 and float16 (accumulated in float32; kRow16); float64 runs
// the generic kernels.
#pragma once

#include "cpu/avx512/target.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "cpu/avx512/channels_last_k3_rows.h"
#include "cpu/avx512/eval.h"
#include "cpu/avx512/row16.h"
#include "cpu/avx512/stride2_k3_rows.h"
#include "cpu/avx512/transpose_tile.h"
#include "cpu/avx512/windowed_plane.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace hooks {

template <typename scalar_t, typename acc_t>
constexpr bool kVectorLanes = kRow16<scalar_t> && std::is_same<acc_t, float>::value;

// ----------------------------------------------------------- row moves ----

// A plain move turns the masked-off lanes into zeros, so its full-width
// stores may land on the gap between dst rows (copy_block's contract).
template <typename src_t, typename dst_t>
inline void copy_block(const src_t* src, int64_t src_pitch, int64_t rows, int64_t cols, dst_t* dst,
                       int64_t dst_pitch) {
  if constexpr (kRow16<src_t> && kRow16<dst_t>) {
    move_rows16<false>(src, src_pitch, rows, cols, dst, dst_pitch, _mm512_setzero_ps(), _mm512_setzero_ps());
  } else {
    copy_rows(src, src_pitch, rows, cols, dst, dst_pitch);
  }
}

template <typename scalar_t, typename acc_t>
inline void affine_block(const acc_t* src, int64_t src_pitch, int64_t rows, int64_t cols, scalar_t* dst,
                         int64_t dst_pitch, acc_t a, acc_t b) {
  if constexpr (kVectorLanes<scalar_t, acc_t>) {
    move_rows16<true>(src, src_pitch, rows, cols, dst, dst_pitch, _mm512_set1_ps(a), _mm512_set1_ps(b));
  } else {
    affine_rows(src, src_pitch, rows, cols, dst, dst_pitch, a, b);
  }
}

template <bool Full>
inline void transpose_tile(const float* a, int64_t rows, int64_t cols, int64_t i0, int64_t j0, int64_t ri,
                           int64_t cj, float* b) {
  transpose_tile16<Full>(a, rows, cols, i0, j0, ri, cj, b);
}

// ---------------------------------------------------------------- eval ----

template <typename scalar_t>
inline bool try_eval(const EvalParams& P) {
  if constexpr (kVectorLanes<scalar_t, at::opmath_type<scalar_t>>) {
    if (P.g.stride == 1) {
      eval_windowed_kernel<scalar_t>(P);
      return true;
    }
    if (P.g.K == 3) {
      eval_stride2_k3_kernel<scalar_t>(P);
      return true;
    }
  }
  return false;
}

// 3x3: register-blocked rows and the shuffle as in-register permutes
// (channels_last_k3_rows.h). Tasks: output rows (n, oh).
template <typename scalar_t, typename acc_t>
inline bool try_eval_channels_last(const EvalParams& P, const acc_t* taps, const acc_t* shift,
                                   const std::vector<int32_t>& src) {
  if constexpr (kVectorLanes<scalar_t, acc_t>) {
    const ConvGeometry& g = P.g;
    if (g.K != 3) return false;
    const int64_t C = g.C;
    const ClPermutePlan permute(src, C);
    const scalar_t* xd = P.x.data_ptr<scalar_t>();
    scalar_t* yd = P.y.data_ptr<scalar_t>();
    at::parallel_for(0, g.N * g.Ho, grain_for(g.Wo * C), [&](int64_t begin, int64_t end) {
      Scratch<float> z(g.Wo * C + 16);  // + 16: the permutes read whole 16-lane blocks
      for (int64_t task = begin; task < end; ++task) {
        const int64_t n = task / g.Ho, oh = task % g.Ho;
        const scalar_t* xn = xd + n * g.H * g.W * C;
        if (g.stride == 1) {
          cl_row_k3<1>(xn, g.H, g.W, C, oh, g.Wo, taps, shift, z.get());
        } else {
          cl_row_k3<2>(xn, g.H, g.W, C, oh, g.Wo, taps, shift, z.get());
        }
        permute.apply_row(z.get(), g.Wo, C, yd + (n * g.Ho + oh) * g.Wo * C);
      }
    });
    return true;
  }
  return false;
}

// ------------------------------------------------- training and backward ----

// Stride 1: the windowed plan of the geometry (masks and window policy),
// held by the op for the duration of the call.
using LanePlan = WindowedPlan;
inline std::shared_ptr<const LanePlan> lane_plan(const ConvGeometry& g) {
  return g.stride == 1 ? windowed_plan_for(g.H, g.W, g.K) : nullptr;
}

// Stride 1 (float32/bfloat16/float16): conv, weight gradient and grad_input
// all in place from the compact planes.
template <int K, int S, typename scalar_t, typename acc_t>
constexpr bool lanes_in_place() {
  return S == 1 && kVectorLanes<scalar_t, acc_t>;
}

// Stride 1 in place; 3x3 stride 2 by rows (stride2_k3_rows.h).
template <int K, int S, typename scalar_t, typename acc_t>
inline bool try_conv_lane(const LanePlan* plan, const scalar_t* xd, const ConvGeometry& g, int64_t input,
                          const acc_t* w, acc_t* zc, int64_t z_pitch) {
  if constexpr (lanes_in_place<K, S, scalar_t, acc_t>()) {
    const int64_t plane = g.H * g.W;
    conv_planes_direct<K>(*plan, xd + input * plane, g.C * plane, g.N, w, 0.0f, zc, z_pitch);
    return true;
  } else if constexpr (K == 3 && S == 2 && kVectorLanes<scalar_t, acc_t>) {
    const int64_t in_plane = g.H * g.W;
    for (int64_t n = 0; n < g.N; ++n)
      conv_plane_s2_k3(xd + (n * g.C + input) * in_plane, g.H, g.W, w, 0.0f, zc + n * z_pitch);
    return true;
  } else {
    return false;
  }
}

// Stride 1: grad_x is the conv of dz with the flipped kernel, whose border
// masks are the forward's.
template <int K, int S, typename scalar_t, typename acc_t>
inline bool try_backward_lane(const LanePlan* plan, const acc_t* dz, const scalar_t* xd, const ConvGeometry& g,
                              int64_t input, const acc_t* wflip, double* gw, scalar_t* gxd) {
  if constexpr (lanes_in_place<K, S, scalar_t, acc_t>()) {
    const int64_t plane = g.H * g.W;
    weight_grad_direct<K>(*plan, dz, xd + input * plane, g.C * plane, g.N, gw);
    conv_planes_direct<K>(*plan, dz, plane, g.N, wflip, 0.0f, gxd + input * plane, g.C * plane);
    return true;
  } else {
    return false;
  }
}

}  // namespace hooks
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
