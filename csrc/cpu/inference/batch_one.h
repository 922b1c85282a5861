// Batch below the thread count (batch 1 on two threads): images one after
// the other, each layer split across the threads (one team for the whole
// call, team.h), by output channels, or by bands of rows for large planes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/inference/isa_stages.h"
#include "cpu/inference/network_plan.h"
#include "cpu/inference/team.h"
#include "cpu/inference/thread_buffers.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

// The per-image buffers, carved from one allocation: the block activations
// (ping-pong) and, for blocks run whole-plane (below), pw1's and dw's outputs.
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

// A block on whole planes, each layer split across the threads by output
// channels (small planes at batch 1, where row bands would be too few rows).
inline void run_block_planes(const BlockPlan& b, const float* x, float* y, const ImageBuffers& buf,
                             const Team& team) {
  const int64_t in_plane = b.in_plane(), out_plane = b.out_plane();
  team.split(b.mid, in_plane, [&](int64_t c0, int64_t c1) {
    Stages::pointwise(b.pw1, x, in_plane, in_plane, PointwiseOut{buf.mid, in_plane, 0, nullptr, 0, true}, c0, c1);
  });
  team.split(b.mid, out_plane * 9, [&](int64_t c0, int64_t c1) {
    depthwise_bn(b, buf.mid, in_plane, b.H, b.W, buf.dw, out_plane, c0, c1);
  });
  if (b.stride == 1) {
    team.split(b.oup, out_plane, [&](int64_t c0, int64_t c1) {
      Stages::pointwise(b.pw2, buf.dw, out_plane, out_plane, PointwiseOut{y, out_plane, 0, x, in_plane, true}, c0,
                        c1);
    });
    return;
  }
  // Stride 2: the average-pooled input channels (y's first inp) and the pw2
  // channels after them, each split evenly across the threads (a pooled
  // channel costs 9 adds a pixel, a pw2 channel mid / groups2 FMAs).
  team.each([&](int64_t t, int64_t threads) {
    average_pool3x3s2(x, in_plane, b.H, b.W, y, out_plane, b.inp * t / threads, b.inp * (t + 1) / threads);
    const int64_t c2 = b.oup - b.inp;
    Stages::pointwise(b.pw2, buf.dw, out_plane, out_plane, PointwiseOut{y, out_plane, b.inp, nullptr, 0, true},
                      c2 * t / threads, c2 * (t + 1) / threads);
  });
}

// Output rows per band of a banded block: about kBandBytes of activations
// (the band's input rows, pw1 and dw rows, output rows) stay in L2 between
// the three layers instead of a whole plane of each going through memory.
constexpr int64_t kBandBytes = 768 * 1024;

inline int64_t band_rows(const BlockPlan& b) {
  const int64_t row_bytes =
      static_cast<int64_t>(sizeof(float)) * ((b.inp + b.mid) * b.stride * b.W + (b.mid + b.oup) * b.Wo);
  return std::clamp<int64_t>(kBandBytes / std::max<int64_t>(1, row_bytes), 4, b.Ho);
}

// Whether a batch-1 block runs by bands of rows, the threads splitting the
// rows (else each layer's channels): planes with rows enough for two bands of
// four. (Bands measured +3.5% on 2.0x g3 at batch 1, and -10% at batch 32,
// where the image groups below run whole planes.)
inline bool banded(const BlockPlan& b) { return b.Ho >= 16; }

// Output rows [q0, q1) of a block for one image, by bands, in this thread.
// pw1's output rows for a band (its rows plus the depthwise window's halo)
// slide: the rows the next band shares are moved to the front, not recomputed.
// The stride-2 average pool is not here (run_image pools whole planes).
inline void run_block_rows(const BlockPlan& b, const float* x, float* y, int64_t q0, int64_t q1) {
  const int64_t S = b.stride, H = b.H, W = b.W, Wo = b.Wo, B = band_rows(b);
  const int64_t mid_rows = S * B + 2, dw_rows = B + 2;
  const int64_t mid_pitch = mid_rows * W, dw_pitch = dw_rows * Wo;
  float* mid = thread_band_buffer(b.mid * (mid_pitch + dw_pitch));
  float* dw = mid + b.mid * mid_pitch;
  int64_t have_s = 0, have_e = 0;  // image rows of pw1's output held at mid rows 0 ..
  for (int64_t r0 = q0; r0 < q1; r0 += B) {
    const int64_t r1 = std::min(q1, r0 + B);
    // Input rows of the band's depthwise windows; a stride-2 band starts at an
    // even row so that its output rows fall on the sub-plane's.
    const int64_t s = S == 1 ? std::max<int64_t>(0, r0 - 1) : std::max<int64_t>(0, 2 * r0 - 2);
    const int64_t e = S == 1 ? std::min(H, r1 + 1) : std::min(H, 2 * r1);
    int64_t t = s;  // first row pw1 computes
    if (have_s <= s && s < have_e) {
      for (int64_t c = 0; c < b.mid; ++c)
        std::memmove(mid + c * mid_pitch, mid + c * mid_pitch + (s - have_s) * W,
                     sizeof(float) * (have_e - s) * W);
      t = have_e;
    }
    if (e > t)
      Stages::pointwise(b.pw1, x + t * W, H * W, (e - t) * W,
                        PointwiseOut{mid + (t - s) * W, mid_pitch, 0, nullptr, 0, true}, 0, b.mid);
    have_s = s;
    have_e = e;
    const int64_t Hs = e - s;
    depthwise_bn(b, mid, mid_pitch, Hs, W, dw, dw_pitch, 0, b.mid);
    // The sub-plane's first output row is the band's, or (a halo row above
    // it) the one before.
    const int64_t skip = S == 1 ? r0 - s : r0 - s / 2;
    const PointwiseOut out = S == 1 ? PointwiseOut{y + r0 * Wo, b.out_plane(), 0, x + r0 * W, H * W, true}
                                    : PointwiseOut{y + r0 * Wo, b.out_plane(), b.inp, nullptr, 0, true};
    Stages::pointwise(b.pw2, dw + skip * Wo, dw_pitch, (r1 - r0) * Wo, out, 0, b.pw2.cout);
  }
}

// A block by bands, the rows split across the threads (the average pool of
// a stride-2 block split by channels first).
inline void run_block_banded(const BlockPlan& b, const float* x, float* y, const Team& team) {
  if (b.stride == 2)
    team.split(b.inp, b.out_plane(), [&](int64_t c0, int64_t c1) {
      average_pool3x3s2(x, b.in_plane(), b.H, b.W, y, b.out_plane(), c0, c1);
    });
  team.split_grain(b.Ho, 4, [&](int64_t q0, int64_t q1) { run_block_rows(b, x, y, q0, q1); });
}

// The classifier of one image's pooled features, its classes split across
// the threads.
inline void classify_split(const NetworkPlan& P, const float* features, float* logits, const Team& team) {
  team.split(P.classes, P.out_C, [&](int64_t j0, int64_t j1) {
    Stages::classifier(P.head_w, P.head_b, features, P.out_C, 1, logits, P.classes, j0, j1);
  });
}

// One image at batch 1: x (C x H x W) to y (out_C x out_H x out_W, or the
// out_C pooled features with a head), every layer split across the threads.
inline void run_image_split(const NetworkPlan& P, const float* x, float* y, const ImageBuffers& buf,
                            const Team& team) {
  const float* cur = x;
  if (P.has_stem) {
    const StemPlan& s = P.stem;
    float* out = (P.blocks.empty() && !P.has_head) ? y : buf.act[0];
    // Split by pooled rows, each thread walking its rows in bands (splitting
    // whole bands would give 56 rows as 32 / 24).
    team.split(s.Hp, s.Wp * s.cout, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; r += kStemBandRows)
        Stages::stem(s, x, out, s.Hp * s.Wp, r, std::min(r1, r + kStemBandRows));
    });
    cur = out;
  }
  for (size_t i = 0; i < P.blocks.size(); ++i) {
    const bool last = i + 1 == P.blocks.size();
    float* out = (last && !P.has_head) ? y : (cur == buf.act[0] ? buf.act[1] : buf.act[0]);
    const BlockPlan& b = P.blocks[i];
    if (banded(b)) {
      run_block_banded(b, cur, out, team);
    } else {
      run_block_planes(b, cur, out, buf, team);
    }
    cur = out;
  }
  if (P.has_head)
    team.split(P.out_C, NetworkPlan::kHeadWindow * NetworkPlan::kHeadWindow, [&](int64_t c0, int64_t c1) {
      head_pool(cur + c0 * P.out_H * P.out_W, P.out_H * P.out_W, c1 - c0, P.out_H, P.out_W, y + c0);
    });
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
