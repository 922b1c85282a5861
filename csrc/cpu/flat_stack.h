// Flat-stack building blocks of the CPU kernels.
//
// The planes of ONE channel (several batch entries n) are staged one below
// the other into a zero-padded buffer with row pitch Wp = W + 2*pad; plane n
// starts at row n*R + pad, with R = H + pad (rounded up to a multiple of S)
// so consecutive planes are separated by at least `pad` zero rows. Output j
// of the "flat" conv, j = orow * Wp + ow, reads the stack at
//   S * j + kh * Wp + kw   (= (S*orow + kh) * Wp + S*ow + kw),
// and plane n's outputs are the rows n*R/S .. n*R/S + Ho - 1. So the conv of
// a whole block of planes is ONE long vector loop, whatever H and W are; the
// columns past Wo and the rows between planes are computed and dropped. On
// ShuffleNet's 7x7 and 14x14 planes this is the difference between scalar
// row tails plus per-plane setup and full vectors.
//
//
// The generic path of every mode: any ISA, dtype, kernel size and stride.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "common/channel_map.h"
#include "common/checks.h"
#include "cpu/isa_hooks.h"
#include "cpu/isa_namespace.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// Elements of one staged block; several buffers of this size per thread stay in L2.
constexpr int64_t kStackElements = 16384;

struct FlatStack {
  int64_t H, W, Ho, Wo, K, S, pad;
  int64_t Wp;      // row pitch of staged planes and of flat outputs: W + 2*pad
  int64_t R;       // staged rows per plane (plane pitch in rows), a multiple of S
  int64_t Ro;      // flat output rows per plane: R / S
  int64_t planes;  // planes per block
  int64_t rows;    // rows of a staged buffer; flat reads past the last plane stay inside

  FlatStack(const ConvGeometry& g)
      : H(g.H), W(g.W), Ho(g.Ho), Wo(g.Wo), K(g.K), S(g.stride), pad(conv_pad(g.K)) {
    Wp = W + 2 * pad;
    R = H + pad;
    R += (S - R % S) % S;
    Ro = R / S;
    planes = std::max<int64_t>(1, std::min<int64_t>(g.N, kStackElements / (R * Wp)));
    // The flat conv of `planes` planes reads up to row planes*R + K - 1 (the
    // stride-1 gather for grad_input reads the same extent of the staged dz).
    rows = planes * R + K;
  }
  int64_t buffer_size() const { return rows * Wp; }
  int64_t flat_size(int64_t nb) const { return nb * Ro * Wp; }
  int64_t in_offset(int64_t n) const { return (n * R + pad) * Wp + pad; }  // plane n's interior
  int64_t out_offset(int64_t n) const { return n * Ro * Wp; }             // plane n's flat outputs
  int64_t blocks(int64_t N) const { return (N + planes - 1) / planes; }
};

// z[j] = sum_{kh,kw} w[kh*K+kw] * xp[S*j + kh*Wp + kw] for j in [0, n).
template <int K, int S, typename acc_t>
inline void conv_flat(const acc_t* __restrict xp, int64_t Wp, int64_t n, const acc_t* __restrict w,
                      acc_t* __restrict z) {
  acc_t wr[K * K];
  for (int t = 0; t < K * K; ++t) wr[t] = w[t];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    acc_t a = 0;
#pragma GCC unroll 7
    for (int kh = 0; kh < K; ++kh) {
#pragma GCC unroll 7
      for (int kw = 0; kw < K; ++kw) a += wr[kh * K + kw] * xp[S * j + kh * Wp + kw];
    }
    z[j] = a;
  }
}

// gw[kh*K + kw] += sum_j dz[j] * xp[S*j + kh*Wp + kw] for j in [0, n): the
// conv-weight gradient, all K*K taps in ONE pass over dz (each dz vector is
// loaded once for K*K products, instead of K*K passes that reload it). The
// partial sums are explicit lanes, part[tap][l], so that the compiler keeps
// them in vector registers without needing an array reduction clause.
template <int K, int S, typename acc_t>
inline void weight_grad_flat(const acc_t* __restrict dz, const acc_t* __restrict xp, int64_t Wp, int64_t n,
                             double* __restrict gw) {
  constexpr int L = 16;
  for (int64_t j0 = 0; j0 < n; j0 += kDotBlock) {
    const int64_t j1 = std::min(n, j0 + kDotBlock);
    acc_t part[K * K][L] = {};
    int64_t j = j0;
    for (; j + L <= j1; j += L) {
#pragma GCC unroll 7
      for (int kh = 0; kh < K; ++kh) {
#pragma GCC unroll 7
        for (int kw = 0; kw < K; ++kw) {
          const acc_t* x = xp + S * j + kh * Wp + kw;
#pragma omp simd
          for (int l = 0; l < L; ++l) part[kh * K + kw][l] += dz[j + l] * x[S * l];
        }
      }
    }
    for (; j < j1; ++j)
      for (int kh = 0; kh < K; ++kh)
        for (int kw = 0; kw < K; ++kw) part[kh * K + kw][0] += dz[j] * xp[S * j + kh * Wp + kw];
    for (int t = 0; t < K * K; ++t) {
      acc_t s = 0;
      for (int l = 0; l < L; ++l) s += part[t][l];
      gw[t] += static_cast<double>(s);
    }
  }
}

// out[2j] = in[j], out[2j+1] = 0 for j in [0, n): the stride-2 dz "dilated"
// onto the staged-input grid, so that grad_input becomes a stride-1 gather
// (conv_flat with the flipped kernel) instead of a strided scatter. Writing
// the zeros too keeps the store contiguous (an interleave, not a scatter).
template <typename acc_t>
inline void dilate2_flat(const acc_t* __restrict in, int64_t n, acc_t* __restrict out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    out[2 * j] = in[j];
    out[2 * j + 1] = acc_t(0);
  }
}

// Stages planes n0 .. n0+nb-1 of input channel `c` into the stack `xp`.
template <typename scalar_t, typename acc_t>
inline void stage_planes(const scalar_t* xd, const ConvGeometry& g, const FlatStack& f, int64_t c, int64_t n0,
                         int64_t nb, acc_t* xp) {
  for (int64_t b = 0; b < nb; ++b)
    hooks::copy_block(xd + ((n0 + b) * g.C + c) * g.H * g.W, g.W, g.H, g.W, xp + f.in_offset(b), f.Wp);
}

// A block smaller than the last one leaves stale planes below it; flat loops
// read into them only for dropped outputs, but a stale Inf times a zero
// gradient would still be NaN, so clear the buffer when the block shrinks.
template <typename acc_t>
inline void clear_if_shrunk(int64_t nb, int64_t* last_nb, acc_t* buf, int64_t size) {
  if (nb < *last_nb) fill_zero(buf, size);
  *last_nb = nb;
}

// Conv of all N planes of input channel `lane.input` into `zc` (plane n at
// zc + n * z_pitch) through the flat stack; leaves the last block staged in xp.
template <int K, int S, typename scalar_t, typename acc_t>
void conv_lane_flat(const scalar_t* xd, const ConvGeometry& g, const FlatStack& f, const LaneChannels& lane,
                 const acc_t* w, acc_t* xp, acc_t* zflat, acc_t* zc, int64_t z_pitch) {
  int64_t last_nb = f.planes;
  for (int64_t n0 = 0; n0 < g.N; n0 += f.planes) {
    const int64_t nb = std::min(f.planes, g.N - n0);
    clear_if_shrunk(nb, &last_nb, xp, f.buffer_size());
    stage_planes(xd, g, f, lane.input, n0, nb, xp);
    conv_flat<K, S>(xp, f.Wp, f.flat_size(nb), w, zflat);
    for (int64_t p = 0; p < nb; ++p) hooks::copy_block(zflat + f.out_offset(p), f.Wp, g.Ho, g.Wo, zc + (n0 + p) * z_pitch, g.Wo);
  }
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
