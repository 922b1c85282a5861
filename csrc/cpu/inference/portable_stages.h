// The layers of the inference pipeline in portable C++ (the baseline and AVX2
// tables; the compiler vectorises the inner loops). Each stage computes a
// range of its output channels (or rows) of one image, so the pipeline can
// split a layer across threads. avx512/inference_stages.h replaces the hot
// ones. NaN and Inf propagate as in the reference: ReLU keeps NaN (torch.relu
// does), max pooling returns NaN when the window holds one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/inference/network_plan.h"
#include "cpu/inference/thread_buffers.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

inline float relu(float v) { return v < 0.0f ? 0.0f : v; }  // NaN stays NaN

// Where a pointwise layer writes, and its epilogue: y = a * acc + b
// (+ residual) (then ReLU). Output channel co goes to plane
// channel_offset + out_channel(co), planes `pitch` floats apart; the residual
// of that channel is at residual + out_channel(co) * residual_pitch.
struct PointwiseOut {
  float* y;
  int64_t pitch;
  int64_t channel_offset = 0;
  const float* residual = nullptr;
  int64_t residual_pitch = 0;
  bool relu = false;
};

struct PortableStages {
  // Output channels [c0, c1) of a 1x1 group conv of `pixels` pixels of one
  // image: x holds cin planes `x_pitch` floats apart.
  static void pointwise(const PointwiseLayer& L, const float* x, int64_t x_pitch, int64_t pixels,
                        const PointwiseOut& out, int64_t c0, int64_t c1) {
    constexpr int64_t kChunk = 256;
    float acc[kChunk];
    const int64_t cin_g = L.cin_per_group(), cout_g = L.cout_per_group();
    for (int64_t co = c0; co < c1; ++co) {
      const float* xg = x + (co / cout_g) * cin_g * x_pitch;
      const float* w = L.w + co * cin_g;
      const int64_t o = L.out_channel(co);
      float* y = out.y + (out.channel_offset + o) * out.pitch;
      const float* r = out.residual != nullptr ? out.residual + o * out.residual_pitch : nullptr;
      for (int64_t p0 = 0; p0 < pixels; p0 += kChunk) {
        const int64_t n = std::min(kChunk, pixels - p0);
        for (int64_t p = 0; p < n; ++p) acc[p] = 0.0f;
        for (int64_t ci = 0; ci < cin_g; ++ci) {
          const float wv = w[ci];
          const float* xr = xg + ci * x_pitch + p0;
          for (int64_t p = 0; p < n; ++p) acc[p] += wv * xr[p];
        }
        const float a = L.scale[co], b = L.shift[co];
        for (int64_t p = 0; p < n; ++p) acc[p] = acc[p] * a + b;
        if (r != nullptr)
          for (int64_t p = 0; p < n; ++p) acc[p] += r[p0 + p];
        if (out.relu)
          for (int64_t p = 0; p < n; ++p) acc[p] = relu(acc[p]);
        for (int64_t p = 0; p < n; ++p) y[p0 + p] = acc[p];
      }
    }
  }

  // Channels [c0, c1) of `images` images: y_cj = bias_c + conv3x3(x_cj,
  // taps_c), padding 1, stride 1 or 2 (bias nullptr: 0). Input plane (c, j) at
  // x + c * x_pitch + j * H * W, output (c, j) at y + c * y_pitch + j * Ho * Wo.
  // Also the 3x3/2 average pool, with taps 1/9.
  static void depthwise3x3(const float* x, int64_t x_pitch, int64_t H, int64_t W, int64_t stride, const float* taps,
                           const float* bias, float* y, int64_t y_pitch, int64_t c0, int64_t c1, int64_t images = 1) {
    const int64_t Ho = window3_out(H, stride), Wo = window3_out(W, stride);
    for (int64_t i = c0 * images; i < c1 * images; ++i) {
      const int64_t c = i / images, j = i % images;
      const float* xc = x + c * x_pitch + j * H * W;
      const float* t = taps + c * 9;
      float* yc = y + c * y_pitch + j * Ho * Wo;
      const float b = bias != nullptr ? bias[c] : 0.0f;
      for (int64_t oh = 0; oh < Ho; ++oh) {
        for (int64_t ow = 0; ow < Wo; ++ow) {
          float acc = b;
          for (int64_t kh = 0; kh < 3; ++kh) {
            const int64_t ih = oh * stride + kh - 1;
            if (ih < 0 || ih >= H) continue;
            for (int64_t kw = 0; kw < 3; ++kw) {
              const int64_t iw = ow * stride + kw - 1;
              if (iw >= 0 && iw < W) acc += t[kh * 3 + kw] * xc[ih * W + iw];
            }
          }
          yc[oh * Wo + ow] = acc;
        }
      }
    }
  }

  // Pooled rows [r0, r1) of every channel: maxpool3x3/2(relu(b + conv3x3/2(x))),
  // output channel planes y_pitch apart.
  static void stem(const StemPlan& s, const float* x, float* y, int64_t y_pitch, int64_t r0, int64_t r1) {
    float* row = thread_scratch(s.Wc);  // one conv output row
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    for (int64_t co = 0; co < s.cout; ++co) {
      float* yc = y + co * y_pitch;
      for (int64_t pr = r0; pr < r1; ++pr) {
        float* yr = yc + pr * s.Wp;
        for (int64_t pc = 0; pc < s.Wp; ++pc) yr[pc] = kLowest;
        for (int64_t dr = -1; dr <= 1; ++dr) {
          const int64_t oh = 2 * pr + dr;
          if (oh < 0 || oh >= s.Hc) continue;
          conv_row(s, x, co, oh, row);
          for (int64_t pc = 0; pc < s.Wp; ++pc) {
            for (int64_t dc = -1; dc <= 1; ++dc) {
              const int64_t ow = 2 * pc + dc;
              if (ow < 0 || ow >= s.Wc) continue;
              const float v = row[ow];
              if (v > yr[pc] || std::isnan(v)) yr[pc] = v;
            }
          }
        }
      }
    }
  }

  // The classifier for classes [j0, j1) of `images` images (features C
  // apart, logits `classes` apart): logits[n][j] = bias[j] + dot(weight row j,
  // features n), four rows at a time, each dot product in 16 partial sums
  // (vectorised by the compiler). The weight is what the head reads most, so
  // each group of four rows serves every image while it is in L1: the weight
  // streams from memory once per call, and at batch one the rows are split
  // across the threads (classify_split).
  static void classifier(const float* w, const float* bias, const float* features, int64_t C, int64_t images,
                         float* logits, int64_t classes, int64_t j0, int64_t j1) {
    constexpr int kRows = 4, kLanes = 16;
    const int64_t full = C / kLanes * kLanes;
    for (int64_t j = j0; j < j1; j += kRows) {
      // A last group of fewer rows repeats its last row (fixed trip counts vectorise).
      const int rows = static_cast<int>(std::min<int64_t>(kRows, j1 - j));
      for (int64_t n = 0; n < images; ++n) {
        const float* f = features + n * C;
        float acc[kRows][kLanes] = {};
        for (int64_t k = 0; k < full; k += kLanes)
          for (int r = 0; r < kRows; ++r) {
            const float* wr = w + (j + std::min(r, rows - 1)) * C + k;
            for (int l = 0; l < kLanes; ++l) acc[r][l] += wr[l] * f[k + l];
          }
        for (int r = 0; r < rows; ++r) {
          const float* wr = w + (j + r) * C;
          float sum = 0.0f;
          for (int l = 0; l < kLanes; ++l) sum += acc[r][l];
          for (int64_t k = full; k < C; ++k) sum += wr[k] * f[k];
          logits[n * classes + j + r] = (bias != nullptr ? bias[j + r] : 0.0f) + sum;
        }
      }
    }
  }

  // Row oh of the stem conv's output channel co, after its ReLU.
  static void conv_row(const StemPlan& s, const float* x, int64_t co, int64_t oh, float* row) {
    for (int64_t ow = 0; ow < s.Wc; ++ow) {
      float acc = s.b[co];
      for (int64_t ci = 0; ci < s.cin; ++ci) {
        const float* t = s.w + (co * s.cin + ci) * 9;
        const float* xc = x + ci * s.H * s.W;
        for (int64_t kh = 0; kh < 3; ++kh) {
          const int64_t ih = 2 * oh + kh - 1;
          if (ih < 0 || ih >= s.H) continue;
          for (int64_t kw = 0; kw < 3; ++kw) {
            const int64_t iw = 2 * ow + kw - 1;
            if (iw >= 0 && iw < s.W) acc += t[kh * 3 + kw] * xc[ih * s.W + iw];
          }
        }
      }
      row[ow] = relu(acc);
    }
  }
};

// The head's pooling: features[c] = mean of the top-left 7x7 window of
// channel c, planes `pitch` apart (AvgPool2d(7) where it yields 1x1).
inline void head_pool(const float* x, int64_t pitch, int64_t C, int64_t H, int64_t W, float* features) {
  constexpr int64_t K = NetworkPlan::kHeadWindow;
  for (int64_t c = 0; c < C; ++c) {
    const float* xc = x + c * pitch;
    float sum = 0.0f;
    for (int64_t h = 0; h < K; ++h)
      for (int64_t w = 0; w < K; ++w) sum += xc[h * W + w];
    features[c] = sum / static_cast<float>(K * K);
  }
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
