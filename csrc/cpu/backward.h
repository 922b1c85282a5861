// Backward of both forwards (training: batch statistics; eval: frozen ones).
// Tasks are parameter channels, as in the training forward. Per lane:
//   1. recompute the conv output z (conv_lane) and reduce sum(g) and
//      sum(g * (z - mean)) over the channel;
//   2. dz = A * (g + B*(z - mean) + D), BN's backward as one affine map per
//      channel, A applied last (common/bn_math.h);
//   3. the conv-weight gradient and grad_input from dz: the ISA's lane path
//      (hooks::try_backward_lane) or the flat stack (backward_lane_flat); a
//      non-finite weight-gradient tap is recomputed from the definition
//      (weight_grad_exact), for the reference's NaN/Inf pattern.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/checks.h"
#include "common/kernel_size_dispatch.h"
#include "cpu/flat_stack.h"
#include "cpu/isa_hooks.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"
#include "cpu/train.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// sum(g) and sum(g * (z - m)) over the N planes of one output channel.
template <typename scalar_t, typename acc_t>
void grad_sums(const scalar_t* gd, const acc_t* z, const ConvGeometry& g, int64_t output, acc_t m, double* sum_g,
               double* sum_gzc) {
  const int64_t plane = g.Ho * g.Wo;
  *sum_g = 0;
  *sum_gzc = 0;
  for (int64_t n = 0; n < g.N; ++n) {
    const scalar_t* gn = gd + (n * g.C + output) * plane;
    const acc_t* zn = z + n * plane;
    for (int64_t i0 = 0; i0 < plane; i0 += kDotBlock) {
      const int64_t i1 = std::min(plane, i0 + kDotBlock);
      acc_t sg = 0, sgz = 0;
#pragma omp simd reduction(+ : sg, sgz)
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t gv = static_cast<acc_t>(gn[i]);
        sg += gv;
        sgz += gv * (zn[i] - m);
      }
      *sum_g += static_cast<double>(sg);
      *sum_gzc += static_cast<double>(sgz);
    }
  }
}

// The staging buffers of the flat backward, per worker thread. grad_input is
// a flat conv of a staged dz with the flipped kernel (a gather: each
// grad_input element is written once). Stride 1: dz is staged like an input
// stack. Stride 2: dz lives in flat-output layout (dropped outputs zero, for
// the weight gradient) and is dilated onto the staged-input grid behind a
// margin of (K-1)*(Wp+1) zeros, so that staged position p gathers
// dil[p + kh*Wp + kw] = dz at p - (K-1-kh)*Wp - (K-1-kw).
template <int K, int S, typename acc_t>
struct FlatBackwardScratch {
  int64_t margin;
  Scratch<acc_t> dzbuf, dil, gbuf;

  FlatBackwardScratch(const FlatStack& f, int64_t stack)
      : margin((K - 1) * (f.Wp + 1)),
        dzbuf(S == 1 ? stack : f.flat_size(f.planes)),
        dil(S == 1 ? 0 : margin + f.buffer_size()),
        gbuf(stack) {}
};

// Step 3 through the flat stack, block of planes by block of planes:
// gw += corr(dz, x); grad_x = conv_transpose(dz, w). `staged`: xp already
// holds the lane's only block of planes (left there by conv_lane_flat).
template <int K, int S, typename scalar_t, typename acc_t>
void backward_lane_flat(const scalar_t* xd, const ConvGeometry& g, const FlatStack& f, const LaneChannels& lane,
                        const acc_t* dz, const acc_t* wflip, bool staged, acc_t* xp,
                        FlatBackwardScratch<K, S, acc_t>& s, double* gw, scalar_t* gxd) {
  const int64_t plane = g.Ho * g.Wo, in_plane = g.H * g.W;
  int64_t last_nb = f.planes;
  for (int64_t n0 = 0; n0 < g.N; n0 += f.planes) {
    const int64_t nb = std::min(f.planes, g.N - n0);
    if (!staged) {
      clear_if_shrunk(nb, &last_nb, xp, f.buffer_size());
      stage_planes(xd, g, f, lane.input, n0, nb, xp);
    }
    if (nb < f.planes) {
      fill_zero(s.dzbuf.get(), S == 1 ? f.buffer_size() : f.flat_size(f.planes));
      if (S != 1) fill_zero(s.dil.get(), s.margin + f.buffer_size());
    }
    acc_t* dz_flat;
    if constexpr (S == 1) {
      for (int64_t p = 0; p < nb; ++p)
        hooks::copy_block(dz + (n0 + p) * plane, g.Wo, g.Ho, g.Wo, s.dzbuf.get() + f.in_offset(p), f.Wp);
      dz_flat = s.dzbuf.get() + f.in_offset(0);  // output row r of the stack sits at staged row r + pad
    } else {
      for (int64_t p = 0; p < nb; ++p)
        hooks::copy_block(dz + (n0 + p) * plane, g.Wo, g.Ho, g.Wo, s.dzbuf.get() + f.out_offset(p), f.Wp);
      dz_flat = s.dzbuf.get();
    }
    weight_grad_flat<K, S>(dz_flat, xp, f.Wp, f.flat_size(nb), gw);
    // grad_input of plane p, row h: flat output row p*R + h of the gather
    // over the staged dz (stride 1), staged row p*R + pad + h of the gather
    // over the dilated dz (stride 2).
    if constexpr (S == 1) {
      conv_flat<K, 1>(s.dzbuf.get(), f.Wp, f.flat_size(nb), wflip, s.gbuf.get());
    } else {
      dilate2_flat(dz_flat, f.flat_size(nb), s.dil.get() + s.margin);
      conv_flat<K, 1>(s.dil.get(), f.Wp, nb * f.R * f.Wp, wflip, s.gbuf.get());
    }
    for (int64_t p = 0; p < nb; ++p) {
      const acc_t* src = s.gbuf.get() + (S == 1 ? f.out_offset(p) : f.in_offset(p));
      hooks::copy_block(src, f.Wp, g.H, g.W, gxd + ((n0 + p) * g.C + lane.input) * in_plane, g.W);
    }
  }
}

// The weight gradient of one lane from its definition: valid outputs only,
// the input zero-padded (as the reference's convolution backward). The fast
// paths also multiply the zero dz of dropped flat outputs by neighbouring
// inputs: harmless for finite inputs, but 0 * inf = NaN, so a NaN/Inf input
// reached taps the reference keeps finite. Run only when a fast tap came out
// non-finite, which finite inputs never cause.
template <int K, int S, typename scalar_t, typename acc_t>
void weight_grad_exact(const acc_t* dz, const scalar_t* xd, const ConvGeometry& g, int64_t input, double* gw) {
  constexpr int pad = K / 2;
  for (int t = 0; t < K * K; ++t) gw[t] = 0.0;
  for (int64_t n = 0; n < g.N; ++n) {
    const scalar_t* xn = xd + (n * g.C + input) * g.H * g.W;
    const acc_t* dzn = dz + n * g.Ho * g.Wo;
    for (int64_t ho = 0; ho < g.Ho; ++ho)
      for (int64_t wo = 0; wo < g.Wo; ++wo) {
        const double d = static_cast<double>(dzn[ho * g.Wo + wo]);
        for (int kh = 0; kh < K; ++kh) {
          const int64_t ih = ho * S - pad + kh;
          for (int kw = 0; kw < K; ++kw) {
            const int64_t iw = wo * S - pad + kw;
            const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
            gw[kh * K + kw] += d * (inside ? static_cast<double>(xn[ih * g.W + iw]) : 0.0);
          }
        }
      }
  }
}

template <typename scalar_t>
void backward_kernel(const BackwardParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  const FlatStack f(g);
  const auto plan_ref = hooks::lane_plan(g);
  const hooks::LanePlan* plan = plan_ref.get();
  const ChannelMap map(g.C, P.groups, P.shuffle_last);
  const std::vector<acc_t> w(P.weight.begin(), P.weight.end());
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  const scalar_t* gd = P.grad_out.data_ptr<scalar_t>();
  scalar_t* gxd = P.grad_x.data_ptr<scalar_t>();
  const int64_t plane = g.Ho * g.Wo;
  const int64_t count = g.N * plane;
  const int64_t KK = g.K * g.K;
  const bool one_block = f.blocks(g.N) == 1;

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    at::parallel_for(0, g.C, grain_for(count), [&](int64_t begin, int64_t end) {
      constexpr bool in_place = hooks::lanes_in_place<K, S, scalar_t, acc_t>();  // stages nothing
      const int64_t stack = in_place ? 0 : f.buffer_size();
      Scratch<acc_t> xp(stack), zflat(in_place ? 0 : f.flat_size(f.planes)), z(count), dz(count);
      FlatBackwardScratch<K, S, acc_t> flat(f, in_place ? 0 : stack);
      acc_t wflip[K * K];
      for (int64_t c = begin; c < end; ++c) {
        const LaneChannels lane = map.lane_of_param(c);
        const acc_t* wc = w.data() + c * KK;
        for (int t = 0; t < K * K; ++t) wflip[t] = wc[K * K - 1 - t];
        const acc_t m = static_cast<acc_t>(P.mean[c]);

        const bool by_hook = conv_lane<K, S>(plan, xd, g, f, lane, wc, xp.get(), zflat.get(), z.get(), plane);
        double sum_g, sum_gzc;
        grad_sums(gd, z.get(), g, lane.output, m, &sum_g, &sum_gzc);
        P.grad_beta[c] = sum_g;
        P.grad_gamma[c] = bn_grad_gamma(sum_gzc, P.invstd[c]);

        const BnBackwardCoefs k =
            bn_backward_coefs(P.gamma[c], P.invstd[c], sum_g, sum_gzc, static_cast<double>(count), P.training);
        const acc_t a = static_cast<acc_t>(k.A), b = static_cast<acc_t>(k.B), d = static_cast<acc_t>(k.D);
        for (int64_t n = 0; n < g.N; ++n) {
          const scalar_t* gn = gd + (n * g.C + lane.output) * plane;
          const acc_t* zn = z.get() + n * plane;
          acc_t* dzn = dz.get() + n * plane;
#pragma omp simd
          for (int64_t i = 0; i < plane; ++i)
            dzn[i] = bn_backward_dz(a, b, d, static_cast<acc_t>(gn[i]), zn[i] - m, P.training);
        }

        double gw[K * K] = {};
        if (!hooks::try_backward_lane<K, S>(plan, dz.get(), xd, g, lane.input, wflip, gw, gxd)) {
          TORCH_INTERNAL_ASSERT(!in_place, "in-place lane path declined");
          backward_lane_flat<K, S>(xd, g, f, lane, dz.get(), wflip, one_block && !by_hook, xp.get(), flat, gw, gxd);
        }
        if (!std::all_of(gw, gw + K * K, [](double v) { return std::isfinite(v); }))
          weight_grad_exact<K, S>(dz.get(), xd, g, lane.input, gw);
        for (int t = 0; t < K * K; ++t) P.grad_w[c * KK + t] = gw[t];
      }
    });
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
