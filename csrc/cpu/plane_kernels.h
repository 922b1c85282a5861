// Per-plane building blocks of the CPU kernels: zero-padded staging, the
// k x k depthwise window over one output row, the weight-gradient correlation
// and the transposed (scatter) conv for grad_input.
//
// A plane is staged once into a zero-padded buffer of the accumulation type,
// so every inner loop below runs without border branches and with constant
// trip counts (K, S are template parameters), which the compiler unrolls and
// vectorises over the output row.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../op_checks.h"
#include "../shuffle_index.h"

namespace shufflenet_fused {
namespace cpu {

struct PlaneShape {
  int64_t H, W;    // input plane
  int64_t Ho, Wo;  // output plane
  int64_t Hp, Wp;  // zero-padded input plane
  int64_t pad;

  explicit PlaneShape(const ConvGeometry& g)
      : H(g.H), W(g.W), Ho(g.Ho), Wo(g.Wo), pad(conv_pad(g.K)) {
    Hp = H + 2 * pad;
    Wp = W + 2 * pad;
  }
};

// Calls f(std::integral_constant<int, K>, std::integral_constant<int, S>).
template <typename F>
void dispatch_kernel_size(int64_t K, int64_t S, F&& f) {
  using std::integral_constant;
  const bool s1 = S == 1;
  switch (K) {
    case 3:
      return s1 ? f(integral_constant<int, 3>{}, integral_constant<int, 1>{})
                : f(integral_constant<int, 3>{}, integral_constant<int, 2>{});
    case 5:
      return s1 ? f(integral_constant<int, 5>{}, integral_constant<int, 1>{})
                : f(integral_constant<int, 5>{}, integral_constant<int, 2>{});
    case 7:
      return s1 ? f(integral_constant<int, 7>{}, integral_constant<int, 1>{})
                : f(integral_constant<int, 7>{}, integral_constant<int, 2>{});
    default:
      TORCH_CHECK(false, "shufflenet_fused: unsupported kernel size ", K);
  }
}

// Copies an H x W plane into an Hp x Wp buffer with a zero border of `pad`.
template <typename scalar_t, typename acc_t>
inline void load_padded(const scalar_t* __restrict src, acc_t* __restrict dst, const PlaneShape& p) {
  std::fill(dst, dst + p.pad * p.Wp, acc_t(0));
  for (int64_t h = 0; h < p.H; ++h) {
    acc_t* row = dst + (h + p.pad) * p.Wp;
    const scalar_t* in = src + h * p.W;
    std::fill(row, row + p.pad, acc_t(0));
#pragma omp simd
    for (int64_t w = 0; w < p.W; ++w) row[p.pad + w] = static_cast<acc_t>(in[w]);
    std::fill(row + p.pad + p.W, row + p.Wp, acc_t(0));
  }
  std::fill(dst + (p.pad + p.H) * p.Wp, dst + p.Hp * p.Wp, acc_t(0));
}

// One output row of the depthwise conv: z[ow] = sum_{kh,kw} w[kh,kw] * x[oh*S+kh, ow*S+kw],
// `window` pointing at padded row oh*S.
template <int K, int S, typename acc_t>
inline void conv_row(const acc_t* __restrict window, int64_t Wp, int64_t Wo,
                     const acc_t* __restrict w, acc_t* __restrict z) {
#pragma omp simd
  for (int64_t ow = 0; ow < Wo; ++ow) {
    acc_t a = 0;
    for (int kh = 0; kh < K; ++kh)
      for (int kw = 0; kw < K; ++kw) a += w[kh * K + kw] * window[kh * Wp + ow * S + kw];
    z[ow] = a;
  }
}

// Whole output plane of the conv into z (Ho x Wo, row-major).
template <int K, int S, typename acc_t>
inline void conv_plane(const acc_t* __restrict xp, const PlaneShape& p, const acc_t* __restrict w,
                       acc_t* __restrict z) {
  for (int64_t oh = 0; oh < p.Ho; ++oh) conv_row<K, S>(xp + oh * S * p.Wp, p.Wp, p.Wo, w, z + oh * p.Wo);
}

// Sum of v[0..n) in the accumulation type, vectorised.
template <typename acc_t>
inline acc_t sum_row(const acc_t* __restrict v, int64_t n) {
  acc_t s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += v[i];
  return s;
}

// grad_w[kh,kw] += sum_{oh,ow} dz[oh,ow] * x[oh*S+kh, ow*S+kw]; rows are
// reduced in acc_t and added up in double, so long planes lose no precision.
template <int K, int S, typename acc_t>
inline void accumulate_weight_grad(const acc_t* __restrict dz, const acc_t* __restrict xp,
                                   const PlaneShape& p, double* __restrict gw) {
  for (int kh = 0; kh < K; ++kh) {
    for (int kw = 0; kw < K; ++kw) {
      double total = 0;
      for (int64_t oh = 0; oh < p.Ho; ++oh) {
        const acc_t* d = dz + oh * p.Wo;
        const acc_t* x = xp + (oh * S + kh) * p.Wp + kw;
        acc_t s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t ow = 0; ow < p.Wo; ++ow) s += d[ow] * x[ow * S];
        total += s;
      }
      gw[kh * K + kw] += total;
    }
  }
}

// Transposed conv of dz into the zero-initialised padded buffer gp (Hp x Wp):
// gp[oh*S+kh, ow*S+kw] += w[kh,kw] * dz[oh,ow]. The interior of gp is grad_x.
template <int K, int S, typename acc_t>
inline void scatter_input_grad(const acc_t* __restrict dz, const acc_t* __restrict w,
                               const PlaneShape& p, acc_t* __restrict gp) {
  std::fill(gp, gp + p.Hp * p.Wp, acc_t(0));
  for (int64_t oh = 0; oh < p.Ho; ++oh) {
    const acc_t* d = dz + oh * p.Wo;
    for (int kh = 0; kh < K; ++kh) {
      acc_t* row = gp + (oh * S + kh) * p.Wp;
      for (int kw = 0; kw < K; ++kw) {
        const acc_t wv = w[kh * K + kw];
        acc_t* r = row + kw;
#pragma omp simd
        for (int64_t ow = 0; ow < p.Wo; ++ow) r[ow * S] += wv * d[ow];
      }
    }
  }
}

// Writes the interior (H x W) of a padded buffer to a plane of scalar_t.
template <typename scalar_t, typename acc_t>
inline void store_interior(const acc_t* __restrict gp, const PlaneShape& p, scalar_t* __restrict dst) {
  for (int64_t h = 0; h < p.H; ++h) {
    const acc_t* row = gp + (h + p.pad) * p.Wp + p.pad;
    scalar_t* out = dst + h * p.W;
#pragma omp simd
    for (int64_t w = 0; w < p.W; ++w) out[w] = static_cast<scalar_t>(row[w]);
  }
}

}  // namespace cpu
}  // namespace shufflenet_fused
