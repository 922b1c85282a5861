// The AVX-512 NCHW eval kernels: output planes convolved in place with the
// BatchNorm folded into the taps (stride 1: windowed_plane.h; 3x3 stride 2:
// stride2_k3_rows.h).
#pragma once

#include "cpu/avx512/target.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "common/channel_map.h"
#include "common/kernel_size_dispatch.h"
#include "cpu/avx512/stride2_k3_rows.h"
#include "cpu/avx512/windowed_plane.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// Per output channel o: the conv taps with BN folded in (taps[o*K*K + t]),
// the BN shift, and the input channel it reads (the shuffle), for the eval
// kernels that walk output planes.
struct FoldedTaps {
  // Uninitialised arrays, every element written below (sized std::vectors
  // would be zero-filled first: this runs on every call, and at batch 1 the
  // setup is a good part of the op's time).
  std::unique_ptr<float[]> taps, shift;
  std::unique_ptr<int64_t[]> input;

  explicit FoldedTaps(const EvalParams& P)
      : taps(new float[P.g.C * P.g.K * P.g.K]), shift(new float[P.g.C]), input(new int64_t[P.g.C]) {
    const ChannelMap map(P.g.C, P.groups, P.shuffle_last);
    const int64_t KK = P.g.K * P.g.K;
    for (OutputChannelWalk walk(map); walk.o < P.g.C; walk.next()) {
      const LaneChannels lane = walk.lane();
      const int64_t o = lane.output;
      const double scale = P.scale[lane.param];
      for (int64_t t = 0; t < KK; ++t) taps[o * KK + t] = static_cast<float>(P.weight[lane.param * KK + t] * scale);
      shift[o] = static_cast<float>(P.shift[lane.param]);
      input[o] = lane.input;
    }
  }
};

// Stride-1 eval with AVX-512: output planes convolved in place, several per
// windowed block (windowed_plane.h), BN folded into the taps.
template <typename scalar_t>
void eval_windowed_kernel(const EvalParams& P) {
  const ConvGeometry& g = P.g;
  const PlanRef plan_ref = windowed_plan_for(g.H, g.W, g.K);
  const WindowedPlan& plan = *plan_ref;
  const int64_t KK = g.K * g.K, plane = g.H * g.W;
  const FoldedTaps folded(P);
  const float* taps = folded.taps.get();
  const float* shift = folded.shift.get();
  const int64_t* input = folded.input.get();
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  dispatch_kernel_size(g.K, 1, [&](auto k_tag, auto) {
    constexpr int K = decltype(k_tag)::value;
    // Tasks: (block of kBlock batch entries, output channel); the planes of a
    // task share their taps (the windowed kernels convolve them together).
    // Consecutive tasks write consecutive output planes and read input planes
    // of the same batch entries (a few hundred KB, which stay in L2).
    constexpr int64_t kBlock = 4;
    const int64_t nblocks = (g.N + kBlock - 1) / kBlock;
    const int64_t pitch = g.C * plane;  // between batch entries
    if (g.N < kBlock) {
      // Too few batch entries to fill a block: tasks are (batch entry, block
      // of kBlock output channels), each plane with its own taps.
      const int64_t cblocks = (g.C + kBlock - 1) / kBlock;
      at::parallel_for(0, g.N * cblocks, grain_for(kBlock * plane), [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / cblocks, o0 = (task % cblocks) * kBlock, count = std::min(kBlock, g.C - o0);
          const scalar_t* xs[kBlock];
          const float* ws[kBlock];
          scalar_t* ys[kBlock];
          for (int64_t i = 0; i < count; ++i) {
            xs[i] = xd + n * pitch + input[o0 + i] * plane;
            ws[i] = taps + (o0 + i) * KK;
            ys[i] = yd + n * pitch + (o0 + i) * plane;
          }
          conv_channels_direct<K>(plan, xs, ws, shift + o0, ys, count);
        }
      });
      return;
    }
    at::parallel_for(0, g.C * nblocks, grain_for(kBlock * plane), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t o = task % g.C, n0 = (task / g.C) * kBlock;
        conv_planes_direct<K>(plan, xd + n0 * pitch + input[o] * plane, pitch, std::min(kBlock, g.N - n0),
                              taps + o * KK, shift[o], yd + n0 * pitch + o * plane, pitch);
      }
    });
  });
}

// Stride-2 3x3 eval with AVX-512: each output plane by rows (stride2_k3_rows.h),
// BN folded into the taps; tasks are output planes, batch-major.
template <typename scalar_t>
void eval_stride2_k3_kernel(const EvalParams& P) {
  const ConvGeometry& g = P.g;
  const FoldedTaps folded(P);
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  const int64_t in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  at::parallel_for(0, g.N * g.C, grain_for(out_plane), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.C, o = task % g.C;
      conv_plane_s2_k3(xd + (n * g.C + folded.input[o]) * in_plane, g.H, g.W, folded.taps.get() + o * 9,
                       folded.shift[o], yd + task * out_plane);
    }
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
