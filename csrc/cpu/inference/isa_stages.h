// The layers of the inference pipeline for the instruction set being
// compiled (Stages: avx512/inference_stages.h or portable_stages.h), and the
// average pool built on them.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cpu/inference/network_plan.h"
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

// Planes [c0, c1) of a block's depthwise conv + BN (of `images` images, as
// depthwise3x3), with the BN of the planes that do not fold applied after.
inline void depthwise_bn(const BlockPlan& b, const float* x, int64_t x_pitch, int64_t H, int64_t W, float* y,
                         int64_t y_pitch, int64_t c0, int64_t c1, int64_t images = 1) {
  Stages::depthwise3x3(x, x_pitch, H, W, b.stride, b.dw, b.dw_bias, y, y_pitch, c0, c1, images);
  const int64_t plane = window3_out(H, b.stride) * window3_out(W, b.stride);
  for (int64_t i = 0; i < b.dw_late_count; ++i) {
    const int64_t c = b.dw_late[i];
    if (c < c0 || c >= c1) continue;
    const float a = b.dw_late_scale[i], s = b.dw_late_shift[i];
    float* yc = y + c * y_pitch;
    for (int64_t e = 0; e < images * plane; ++e) yc[e] = yc[e] * a + s;
  }
}

// Channels [c0, c1) of AvgPool2d(3, 2, 1) (padding counted) of `images`
// images: the depthwise conv with taps 1/9 and no bias. Planes as in
// depthwise3x3: channel pitches x_pitch / y_pitch, images one plane apart.
inline void average_pool3x3s2(const float* x, int64_t x_pitch, int64_t H, int64_t W, float* y, int64_t y_pitch,
                              int64_t c0, int64_t c1, int64_t images = 1) {
  constexpr int64_t kChannels = 64;
  float taps[9 * kChannels];
  for (float& t : taps) t = 1.0f / 9.0f;
  // depthwise3x3 reads channel c's taps at taps[9 c]: rebase each chunk to channel 0.
  for (int64_t p0 = c0; p0 < c1; p0 += kChannels) {
    const int64_t count = std::min(kChannels, c1 - p0);
    Stages::depthwise3x3(x + p0 * x_pitch, x_pitch, H, W, 2, taps, nullptr, y + p0 * y_pitch, y_pitch, 0, count,
                         images);
  }
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
