// channels_last eval.
// x and y are NHWC in memory, so the lanes are channels: each output pixel
// is, per tap, ONE vector loop over C (contiguous loads, nothing staged,
// borders are skipped taps, no padded columns computed), accumulated in input-
// channel order into a row buffer; the row is then written through the
// channel map (in this layout the shuffle is a per-pixel permutation).
// The ISA may take the whole op (hooks::try_eval_channels_last).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/channel_map.h"
#include "common/checks.h"
#include "common/kernel_size_dispatch.h"
#include "cpu/flat_stack.h"
#include "cpu/isa_hooks.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// y[o] = z[src[o]] for one pixel of C channels.
template <typename scalar_t, typename acc_t>
inline void permute_pixel(const acc_t* __restrict z, const int32_t* __restrict src, int64_t C,
                          scalar_t* __restrict y) {
#pragma omp simd
  for (int64_t o = 0; o < C; ++o) y[o] = static_cast<scalar_t>(z[src[o]]);
}

// The taps of one output pixel that fall inside the image (NHWC, batch entry
// already applied to x).
template <typename scalar_t>
struct ClWindow {
  const scalar_t* x;
  int64_t W, C, K;
  int64_t ih0, kh0, kh1;  // first window row (may be < 0) and its valid taps
  int64_t iw0, kw0, kw1;
};

// z[c0 + c] = shift[c0 + c] + sum over the window's taps of wt[t*C + c0 + c] *
// x[pixel, c0 + c], for c < cb <= CB. With cb == CB the trip counts are
// constants and acc[] lives in vector registers.
template <int CB, typename scalar_t, typename acc_t>
inline void cl_conv_chunk(const ClWindow<scalar_t>& w, const acc_t* __restrict wt, const acc_t* __restrict shift,
                          int64_t c0, int64_t cb, acc_t* __restrict z) {
  acc_t acc[CB];
  if (cb == CB) {
#pragma omp simd
    for (int c = 0; c < CB; ++c) acc[c] = shift[c0 + c];
    for (int64_t kh = w.kh0; kh < w.kh1; ++kh) {
      for (int64_t kw = w.kw0; kw < w.kw1; ++kw) {
        const scalar_t* xs = w.x + ((w.ih0 + kh) * w.W + w.iw0 + kw) * w.C + c0;
        const acc_t* ws = wt + (kh * w.K + kw) * w.C + c0;
#pragma omp simd
        for (int c = 0; c < CB; ++c) acc[c] += ws[c] * static_cast<acc_t>(xs[c]);
      }
    }
#pragma omp simd
    for (int c = 0; c < CB; ++c) z[c0 + c] = acc[c];
    return;
  }
  for (int64_t c = 0; c < cb; ++c) acc[c] = shift[c0 + c];
  for (int64_t kh = w.kh0; kh < w.kh1; ++kh) {
    for (int64_t kw = w.kw0; kw < w.kw1; ++kw) {
      const scalar_t* xs = w.x + ((w.ih0 + kh) * w.W + w.iw0 + kw) * w.C + c0;
      const acc_t* ws = wt + (kh * w.K + kw) * w.C + c0;
      for (int64_t c = 0; c < cb; ++c) acc[c] += ws[c] * static_cast<acc_t>(xs[c]);
    }
  }
  for (int64_t c = 0; c < cb; ++c) z[c0 + c] = acc[c];
}

template <typename scalar_t>
void eval_channels_last_kernel(const EvalParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  const int64_t C = g.C, K = g.K, KK = g.K * g.K, pad = conv_pad(g.K);
  const ChannelMap map(C, P.groups, P.shuffle_last);
  // Per input channel: the folded taps of its parameter channel, tap-major
  // (wt[t*C + c]), and its shift; per output channel: the input it reads.
  std::vector<acc_t> wt(KK * C), shift(C);
  std::vector<int32_t> src(C);
  bool identity = true;
  for (OutputChannelWalk walk(map); walk.o < C; walk.next()) {
    const LaneChannels lane = walk.lane();
    for (int64_t t = 0; t < KK; ++t)
      wt[t * C + lane.input] = static_cast<acc_t>(P.weight[lane.param * KK + t] * P.scale[lane.param]);
    shift[lane.input] = static_cast<acc_t>(P.shift[lane.param]);
    src[lane.output] = static_cast<int32_t>(lane.input);
    identity = identity && lane.input == lane.output;
  }
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();

  if (hooks::try_eval_channels_last<scalar_t>(P, wt.data(), shift.data(), src)) return;

  // Tasks: output rows (n, oh).
  at::parallel_for(0, g.N * g.Ho, grain_for(g.Wo * C), [&](int64_t begin, int64_t end) {
    Scratch<acc_t> z(g.Wo * C);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.Ho, oh = task % g.Ho;
      int64_t kh0, kh1;
      valid_taps(oh, g.H, K, g.stride, &kh0, &kh1);
      const scalar_t* xn = xd + n * g.H * g.W * C;
      const int64_t ih0 = oh * g.stride - pad;
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        ClWindow<scalar_t> win{xn, g.W, C, K, ih0, kh0, kh1, ow * g.stride - pad, 0, 0};
        valid_taps(ow, g.W, K, g.stride, &win.kw0, &win.kw1);
        acc_t* zr = z.get() + ow * C;
        // Full-width chunks keep their accumulators in registers over all
        // taps. The last C % 16 channels are covered by one more full chunk
        // that ends at C, overlapping the previous one (it rewrites the same
        // values), so only C < 16 takes the runtime-length loop.
        int64_t c0 = 0;
        for (; c0 + 64 <= C; c0 += 64) cl_conv_chunk<64>(win, wt.data(), shift.data(), c0, 64, zr);
        for (; c0 + 16 <= C; c0 += 16) cl_conv_chunk<16>(win, wt.data(), shift.data(), c0, 16, zr);
        if (c0 < C) {
          if (C >= 16) {
            cl_conv_chunk<16>(win, wt.data(), shift.data(), C - 16, 16, zr);
          } else {
            cl_conv_chunk<16>(win, wt.data(), shift.data(), c0, C - c0, zr);
          }
        }
      }
      scalar_t* yr = yd + (n * g.Ho + oh) * g.Wo * C;
      if (identity) {
        const acc_t* zr = z.get();
#pragma omp simd
        for (int64_t i = 0; i < g.Wo * C; ++i) yr[i] = static_cast<scalar_t>(zr[i]);
      } else {
        for (int64_t ow = 0; ow < g.Wo; ++ow) permute_pixel(z.get() + ow * C, src.data(), C, yr + ow * C);
      }
    }
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
