// Batch at or above the thread count: each thread runs groups of its images
// through the whole network (see below).
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/inference/isa_stages.h"
#include "cpu/inference/network_plan.h"
#include "cpu/inference/thread_buffers.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

// ------------------------------------------------------------ image groups ----
//
// At N >= threads a thread runs its images in groups of up to kMaxGroup. The
// early layers (large planes, small weights) run image by image, depth first,
// so that an image's activations stay in L2 from one layer to the next. From
// the first block from which every block's 1x1 weights outweigh an image's
// activations (the stride-1 7x7 blocks of 1.0x and 2.0x; none of 0.5x g8), the group's
// activations are kept channel-major: plane
// (c, j) of image j at base + (c * G + j) * plane. A span of consecutive
// images of one channel is then contiguous, and a 1x1 conv computes it as one
// plane of span * plane pixels: its weights are read once per span instead of
// once per image, and a 7x7 plane (49 pixels, 4 vectors of which 3.06 are
// used) loses no lanes.

constexpr int64_t kMaxGroup = 8;
// A grouped block runs spans of as many images as keep about this many bytes
// of its activations (input, pw1 and dw outputs, output) per span: past L2,
// but reading the weights once per span is what these blocks need (spans of
// 8 measured 5% faster than of 2 on 2.0x g3 at batch 32).
constexpr int64_t kSpanBytes = 8 * 1024 * 1024;

// Planes of a batch of images: plane (c, j) at base + c * pitch + j * image.
struct Planes {
  float* base;
  int64_t pitch, image;
  Planes at(int64_t j) const { return Planes{base + j * image, pitch, image}; }
};

// Bytes of a block's activations per image (input, pw1 and dw outputs,
// output) and of its 1x1 conv weights.
inline int64_t activation_bytes(const BlockPlan& b) {
  return static_cast<int64_t>(sizeof(float)) *
         (b.inp * b.in_plane() + b.mid * (b.in_plane() + b.out_plane()) + b.oup * b.out_plane());
}
inline int64_t weight_bytes(const BlockPlan& b) {
  return static_cast<int64_t>(sizeof(float)) *
         (b.mid * b.pw1.cin_per_group() + b.pw2.cout * b.pw2.cin_per_group());
}

inline int64_t span_images(const BlockPlan& b, int64_t images) {
  return std::clamp<int64_t>(kSpanBytes / std::max<int64_t>(1, activation_bytes(b)), 1, images);
}

// Blocks whose weights outweigh an image's activations (the late, small
// planes) run in spans of images; the first block from which all do
// (blocks.size(): none).
inline size_t first_grouped_block(const NetworkPlan& P, int64_t G) {
  size_t k = P.blocks.size();
  while (k > 0 && G > 1 && weight_bytes(P.blocks[k - 1]) >= activation_bytes(P.blocks[k - 1])) --k;
  return k;
}

// A block on `g` images; with g > 1, the images of `in` and `out` are one
// plane apart (a group's layout).
inline void run_block_span(const BlockPlan& b, Planes in, Planes out, int64_t g, float* mid, float* dw) {
  const int64_t in_pixels = g * b.in_plane(), out_pixels = g * b.out_plane();
  Stages::pointwise(b.pw1, in.base, in.pitch, in_pixels, PointwiseOut{mid, in_pixels, 0, nullptr, 0, true}, 0,
                    b.mid);
  depthwise_bn(b, mid, in_pixels, b.H, b.W, dw, out_pixels, 0, b.mid, g);
  if (b.stride == 1) {
    Stages::pointwise(b.pw2, dw, out_pixels, out_pixels, PointwiseOut{out.base, out.pitch, 0, in.base, in.pitch, true},
                      0, b.pw2.cout);
    return;
  }
  average_pool3x3s2(in.base, in.pitch, b.H, b.W, out.base, out.pitch, 0, b.inp, g);
  Stages::pointwise(b.pw2, dw, out_pixels, out_pixels, PointwiseOut{out.base, out.pitch, b.inp, nullptr, 0, true}, 0,
                    b.pw2.cout);
}

// Buffer sizes (elements) of a group of G images whose blocks from k on run
// on spans: the channel-major activations from block k's input on (with no
// block after k: the head's input), and pw1's and dw's outputs, for one image
// before k and for spans of up to G images from k on.
struct GroupSizes {
  int64_t act = 0, mid = 0, dw = 0;
  GroupSizes(const NetworkPlan& P, size_t k, int64_t G) : mid(P.mid_elems()), dw(P.dw_elems()) {
    if (k == P.blocks.size()) act = P.out_C * P.out_H * P.out_W;
    for (size_t i = k; i < P.blocks.size(); ++i) {
      const BlockPlan& b = P.blocks[i];
      act = std::max({act, b.inp * b.in_plane(), b.oup * b.out_plane()});
      mid = std::max(mid, G * b.mid * b.in_plane());
      dw = std::max(dw, G * b.mid * b.out_plane());
    }
    act *= G;
  }
};

// Images [n0, n1) of x through the whole plan, in this thread.
inline void run_images_grouped(const NetworkPlan& P, const float* x, float* y, int64_t n0, int64_t n1) {
  const int64_t G = std::min(kMaxGroup, n1 - n0);
  const size_t k = first_grouped_block(P, G);
  // Per-image buffers (ping-pong, pw1 and dw outputs) for the blocks before
  // k, group buffers (ping-pong) from k on; pw1 and dw outputs are shared.
  const int64_t act = P.activation_elems();
  const GroupSizes group(P, k, G);
  float* base = thread_image_buffers(2 * act + 2 * group.act + group.mid + group.dw);
  float* acts[2] = {base, base + act};
  float* group_acts[2] = {base + 2 * act, base + 2 * act + group.act};
  float* mid = base + 2 * act + 2 * group.act;
  float* dw = mid + group.mid;
  const int64_t in_image = P.C * P.H * P.W;
  const int64_t out_image = P.has_head ? P.out_C : P.out_C * P.out_H * P.out_W;
  const auto nchw = [](float* p, int64_t channels, int64_t plane) { return Planes{p, plane, channels * plane}; };
  for (int64_t g0 = n0; g0 < n1; g0 += G) {
    const int64_t gs = std::min(G, n1 - g0);
    const auto grouped = [&](int which, int64_t plane) { return Planes{group_acts[which], gs * plane, plane}; };
    // Depth first: the stem and blocks [0, k) one image at a time.
    Planes cur{nullptr, 0, 0};
    for (int64_t j = 0; j < gs; ++j) {
      Planes in = nchw(const_cast<float*>(x) + (g0 + j) * in_image, P.C, P.H * P.W);
      int which = 0;
      const auto output_of = [&](size_t i, int64_t channels, int64_t plane) {
        // Block i's output (i == -1: the stem's): y itself if it is the last
        // layer, the group's buffer if the next block is grouped, else the
        // image's ping-pong buffer.
        if (i + 1 == P.blocks.size() && !P.has_head) return nchw(y + (g0 + j) * out_image, channels, plane);
        if (i + 1 == k) return grouped(0, plane).at(j);
        return nchw(acts[which], channels, plane);
      };
      if (P.has_stem) {
        const StemPlan& s = P.stem;
        const Planes out = output_of(static_cast<size_t>(-1), s.cout, s.Hp * s.Wp);
        Stages::stem(s, in.base, out.base, out.pitch, 0, s.Hp);
        in = out;
        which = 1;
      }
      for (size_t i = 0; i < k; ++i) {
        const BlockPlan& b = P.blocks[i];
        const Planes out = output_of(i, b.oup, b.out_plane());
        run_block_span(b, in, out, 1, mid, dw);
        in = out;
        which ^= 1;
      }
      if (j == 0) cur = in;  // image 0 of the group's layout (when k > 0 or a stem ran)
    }
    // The group's input to block k: the stem's or block k-1's outputs, or the
    // input itself when nothing ran per image.
    if (!P.has_stem && k == 0) cur = nchw(const_cast<float*>(x) + g0 * in_image, P.C, P.H * P.W);
    int which = 0;
    for (size_t i = k; i < P.blocks.size(); ++i) {
      const BlockPlan& b = P.blocks[i];
      const bool to_y = i + 1 == P.blocks.size() && !P.has_head;
      const Planes out = to_y ? nchw(y + g0 * out_image, b.oup, b.out_plane()) : grouped(which ^ 1, b.out_plane());
      const bool spans = cur.image == b.in_plane() && out.image == b.out_plane();
      const int64_t span = spans ? span_images(b, gs) : 1;
      for (int64_t j = 0; j < gs; j += span)
        run_block_span(b, cur.at(j), out.at(j), std::min(span, gs - j), mid, dw);
      cur = out;
      which ^= 1;
    }
    if (P.has_head)
      for (int64_t j = 0; j < gs; ++j)
        head_pool(cur.at(j).base, cur.pitch, P.out_C, P.out_H, P.out_W, y + (g0 + j) * out_image);
  }
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
