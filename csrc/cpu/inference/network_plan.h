// The plan of one shufflenet_v1_infer call: every layer's parameters (the
// 1x1 conv weights straight from the argument tensors, everything else folded
// with its BatchNorm for this call) and shapes, and the buffer sizes an image
// needs. Built and checked by the op entry (inference_cpu.cpp); the per-ISA
// pipeline (pipeline.h) only reads it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace shufflenet_fused {
namespace cpu {

// Output size of a 3x3 window with padding 1 at stride 1 or 2 (the depthwise
// convs, the stem conv and both pools).
constexpr int64_t window3_out(int64_t size, int64_t stride) { return (size - 1) / stride + 1; }

// A 1x1 (group) convolution followed by its BatchNorm as a per-channel
// scale and shift: y[co] = scale[co] * sum(w[co] * x) + shift[co]. Output
// channel co belongs to group co / (cout / groups) and reads that group's
// cin / groups input channels; w is (cout, cin / groups) row-major, the
// module's own weight (the BN is applied in the epilogue, so no folded copy of
// the weights is made per call). It is stored to plane out_map[co] of the
// destination (the folded channel shuffle), or co.
struct PointwiseLayer {
  const float* w = nullptr;
  const float* scale = nullptr;
  const float* shift = nullptr;
  const int64_t* out_map = nullptr;
  int64_t cin = 0, cout = 0, groups = 1;

  int64_t cin_per_group() const { return cin / groups; }
  int64_t cout_per_group() const { return cout / groups; }
  int64_t out_channel(int64_t co) const { return out_map != nullptr ? out_map[co] : co; }
};

// One ShuffleNetV1 unit: pw1 (+ReLU) -> 3x3 depthwise (+bias) -> pw2, then
// relu(pw2 + x) at stride 1, or [avgpool3x3/2(x), relu(pw2)] at stride 2.
struct BlockPlan {
  int64_t inp = 0, oup = 0, mid = 0, stride = 1;
  int64_t H = 0, W = 0, Ho = 0, Wo = 0;  // input and output plane
  PointwiseLayer pw1, pw2;               // pw2.cout: oup (stride 1) or oup - inp (stride 2)
  const float* dw = nullptr;             // (mid, 9), BN folded, in pw1's output order
  const float* dw_bias = nullptr;        // (mid)
  // Planes whose BN does not fold (a non-finite scale or shift: eps = 0 with a
  // zero variance, an infinite gamma): their taps are the conv's own, and the
  // BN is applied after the conv, y = y * scale + shift, as F.batch_norm does.
  const int64_t* dw_late = nullptr;      // plane indices
  const float* dw_late_scale = nullptr;  // per entry of dw_late
  const float* dw_late_shift = nullptr;
  int64_t dw_late_count = 0;

  int64_t in_plane() const { return H * W; }
  int64_t out_plane() const { return Ho * Wo; }
};

// Pooled rows per stem band: the unit the pipeline splits the stem into (a
// band's conv rows, 8 output channels at a time, stay in L1).
constexpr int64_t kStemBandRows = 8;

// 3x3/2 conv (padding 1) + folded BN + ReLU, then 3x3/2 max pool (padding 1).
struct StemPlan {
  const float* w = nullptr;  // (cout, cin, 3, 3), BN folded
  const float* b = nullptr;
  int64_t cin = 0, cout = 0;
  int64_t H = 0, W = 0;    // input
  int64_t Hc = 0, Wc = 0;  // conv output
  int64_t Hp = 0, Wp = 0;  // pooled output
};

struct NetworkPlan {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  bool has_stem = false, has_head = false;
  StemPlan stem;
  std::vector<BlockPlan> blocks;
  // Output of the last layer before the head: C x H x W per image.
  int64_t out_C = 0, out_H = 0, out_W = 0;
  // Head: the average of the top-left 7x7 window (AvgPool2d(7) with a 1x1
  // result), then the classifier (classes x out_C weight, optional bias).
  static constexpr int64_t kHeadWindow = 7;
  int64_t classes = 0;
  const float* head_w = nullptr;
  const float* head_b = nullptr;

  // Elements of each per-image buffer: the block activations (ping-pong),
  // pw1's and dw's outputs.
  int64_t activation_elems() const {
    int64_t e = C * H * W;
    if (has_stem) e = std::max(e, stem.cout * stem.Hp * stem.Wp);
    for (const BlockPlan& b : blocks) e = std::max({e, b.inp * b.in_plane(), b.oup * b.out_plane()});
    return e;
  }
  int64_t mid_elems() const {
    int64_t e = 0;
    for (const BlockPlan& b : blocks) e = std::max(e, b.mid * b.in_plane());
    return e;
  }
  int64_t dw_elems() const {
    int64_t e = 0;
    for (const BlockPlan& b : blocks) e = std::max(e, b.mid * b.out_plane());
    return e;
  }
};

// Whether a call runs its images one after the other with every layer split
// across the threads (batch below the thread count: batch_one.h), rather than
// groups of whole images per thread (image_groups.h).
inline bool splits_layers(int64_t N, int threads, bool in_parallel_region) {
  return N < threads && threads > 1 && !in_parallel_region;
}

// What the op entry hands to the active ISA's pipeline.
struct InferParams {
  const NetworkPlan& plan;
  const float* x;  // N x C x H x W, contiguous
  // Without a head: N x out_C x out_H x out_W; with one: N x out_C (pooled features).
  float* y;
  // With a head: N x classes, the classifier's output (y then holds the
  // pooled features).
  float* logits = nullptr;
};

}  // namespace cpu
}  // namespace shufflenet_fused
