// The inference pipeline of one instruction set: the whole plan (stem,
// blocks, head pooling) run image by image. At N >= threads each thread runs
// whole images in its own buffers; below that each layer is split across the
// threads by output channels (or the stem by bands of rows), images one after
// the other. See docs/inference.md.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu/inference/network_plan.h"
#include "cpu/inference/thread_buffers.h"
#include "cpu/isa_namespace.h"

#if defined(SF_CPU_HAS_AVX512)
#include "cpu/avx512/inference_stages.h"
#else
#include "cpu/inference/portable_stages.h"
namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {
using Stages = PortableStages;
}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
#endif

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

// Runs fn(begin, end) over [0, units): in one call (the thread runs the whole
// image), or split across the threads (batch below the thread count).
struct LayerSplit {
  bool across_threads;
  template <typename Fn>
  void operator()(int64_t units, int64_t unit_elems, const Fn& fn) const {
    if (units <= 0) return;
    if (!across_threads) {
      fn(0, units);
      return;
    }
    // Below ~4K output elements per task a thread costs more than it saves.
    const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, unit_elems));
    at::parallel_for(0, units, grain, fn);
  }
};

// The four per-image buffers, carved from one allocation.
struct ImageBuffers {
  float* act[2];
  float* mid;
  float* dw;

  ImageBuffers(const NetworkPlan& P, float* base) {
    const int64_t a = P.activation_elems(), m = P.mid_elems();
    act[0] = base;
    act[1] = base + a;
    mid = base + 2 * a;
    dw = base + 2 * a + m;
  }
  static int64_t elems(const NetworkPlan& P) { return 2 * P.activation_elems() + P.mid_elems() + P.dw_elems(); }
};

// Channels [c0, c1) of AvgPool2d(3, 2, 1) (padding counted): the depthwise
// conv with taps 1/9 and no bias.
inline void average_pool3x3s2(const float* x, int64_t H, int64_t W, float* y, int64_t c0, int64_t c1) {
  constexpr int64_t kChannels = 64;
  float taps[9 * kChannels];
  for (float& t : taps) t = 1.0f / 9.0f;
  const int64_t in_plane = H * W, out_plane = window3_out(H, 2) * window3_out(W, 2);
  // depthwise3x3 reads channel c's taps at taps[9 c]: rebase each chunk to channel 0.
  for (int64_t p0 = c0; p0 < c1; p0 += kChannels) {
    const int64_t count = std::min(kChannels, c1 - p0);
    Stages::depthwise3x3(x + p0 * in_plane, H, W, 2, taps, nullptr, y + p0 * out_plane, 0, count);
  }
}

inline void run_block(const BlockPlan& b, const float* x, float* y, const ImageBuffers& buf, const LayerSplit& split) {
  const int64_t in_plane = b.in_plane(), out_plane = b.out_plane();
  split(b.mid, in_plane, [&](int64_t c0, int64_t c1) {
    Stages::pointwise(b.pw1, x, in_plane, PointwiseOut{buf.mid, 0, nullptr, true}, c0, c1);
  });
  split(b.mid, out_plane * 9, [&](int64_t c0, int64_t c1) {
    Stages::depthwise3x3(buf.mid, b.H, b.W, b.stride, b.dw, b.dw_bias, buf.dw, c0, c1);
  });
  if (b.stride == 1) {
    split(b.oup, out_plane, [&](int64_t c0, int64_t c1) {
      Stages::pointwise(b.pw2, buf.dw, out_plane, PointwiseOut{y, 0, x, true}, c0, c1);
    });
    return;
  }
  // Stride 2: units [0, inp) are the average-pooled input channels, [inp, oup)
  // the pw2 channels after them.
  split(b.oup, out_plane, [&](int64_t c0, int64_t c1) {
    average_pool3x3s2(x, b.H, b.W, y, c0, std::min(c1, b.inp));
    const int64_t q0 = std::max(c0, b.inp) - b.inp, q1 = c1 - b.inp;
    if (q1 > q0) Stages::pointwise(b.pw2, buf.dw, out_plane, PointwiseOut{y, b.inp, nullptr, true}, q0, q1);
  });
}

// One image: x (C x H x W) to y (out_C x out_H x out_W, or the out_C pooled
// features with a head).
inline void run_image(const NetworkPlan& P, const float* x, float* y, const ImageBuffers& buf,
                      const LayerSplit& split) {
  const float* cur = x;
  if (P.has_stem) {
    const StemPlan& s = P.stem;
    float* out = (P.blocks.empty() && !P.has_head) ? y : buf.act[0];
    const int64_t bands = (s.Hp + kStemBandRows - 1) / kStemBandRows;
    split(bands, kStemBandRows * s.Wp * s.cout, [&](int64_t b0, int64_t b1) {
      Stages::stem(s, x, out, b0 * kStemBandRows, std::min(s.Hp, b1 * kStemBandRows));
    });
    cur = out;
  }
  for (size_t i = 0; i < P.blocks.size(); ++i) {
    const bool last = i + 1 == P.blocks.size();
    float* out = (last && !P.has_head) ? y : (cur == buf.act[0] ? buf.act[1] : buf.act[0]);
    run_block(P.blocks[i], cur, out, buf, split);
    cur = out;
  }
  if (P.has_head) head_pool(cur, P.out_C, P.out_H, P.out_W, y);
}

inline void infer_network(const InferParams& p) {
  const NetworkPlan& P = p.plan;
  const int64_t in_elems = P.C * P.H * P.W;
  const int64_t out_elems = P.has_head ? P.out_C : P.out_C * P.out_H * P.out_W;
  const int64_t buffer_elems = ImageBuffers::elems(P);
  const int threads = at::get_num_threads();
  if (P.N >= threads || threads == 1 || at::in_parallel_region()) {
    at::parallel_for(0, P.N, 1, [&](int64_t n0, int64_t n1) {
      const ImageBuffers buf(P, thread_image_buffers(buffer_elems));
      for (int64_t n = n0; n < n1; ++n)
        run_image(P, p.x + n * in_elems, p.y + n * out_elems, buf, LayerSplit{false});
    });
    return;
  }
  const ImageBuffers buf(P, thread_image_buffers(buffer_elems));
  for (int64_t n = 0; n < P.N; ++n) run_image(P, p.x + n * in_elems, p.y + n * out_elems, buf, LayerSplit{true});
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
