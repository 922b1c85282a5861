// The AVX-512 layers of the inference pipeline (float32): the 1x1 group conv
// as a register-blocked micro-kernel, the depthwise conv and average pool
// through the eval op's kernels (windowed_plane.h, stride2_k3_rows.h), the
// stem conv + max pool by bands of rows. The rest is portable_stages.h.
#pragma once

#include "cpu/avx512/target.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "cpu/avx512/row16.h"
#include "cpu/avx512/stride2_k3_rows.h"
#include "cpu/avx512/windowed_plane.h"
#include "cpu/inference/network_plan.h"
#include "cpu/inference/portable_stages.h"
#include "cpu/inference/thread_buffers.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

// Pixels per pointwise tile: 4 vectors, so that 6 output channels x 4 vectors
// of accumulators + 4 input vectors + 1 weight fill 29 of the 32 registers.
constexpr int kPointwiseVectors = 4;
constexpr int kPointwiseRows = 6;

// max(a, b) that returns NaN when either is NaN (vmaxps alone returns b when
// a is NaN).
inline __m512 max_keep_nan(__m512 a, __m512 b) {
  return _mm512_mask_mov_ps(_mm512_max_ps(a, b), _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
}

// Output channels co .. co + R - 1 (one group) x pixels p0 .. p0 + 63 of a
// plane: acc = sum over the group's input channels of w * x, x read from the
// packed tile (xt[ci * 64 + pixel], zero past the plane), then the epilogue
// (BN scale and shift, residual, ReLU), lanes past the plane masked off.
template <int R>
inline void pointwise_tile(const PointwiseLayer& L, const float* xt, int64_t plane, int64_t co, int64_t p0,
                           const __mmask16* m, const PointwiseOut& out) {
  constexpr int V = kPointwiseVectors;
  const int64_t cin_g = L.cin / L.groups;
  const float* w = L.w + co * cin_g;
  __m512 acc[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t ci = 0; ci < cin_g; ++ci) {
    const float* xr = xt + ci * 16 * V;
    __m512 xv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) xv[v] = _mm512_load_ps(xr + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_set1_ps(w[r * cin_g + ci]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const int64_t o = L.out_channel(co + r);
    const __m512 scale = _mm512_set1_ps(L.scale[co + r]), shift = _mm512_set1_ps(L.shift[co + r]);
    float* y = out.y + (out.channel_offset + o) * plane + p0;
    const float* res = out.residual != nullptr ? out.residual + o * plane + p0 : nullptr;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      __m512 a = _mm512_fmadd_ps(acc[r][v], scale, shift);
      if (res != nullptr) a = _mm512_add_ps(a, load_row16(res + 16 * v, m[v]));
      if (out.relu) a = _mm512_max_ps(zero, a);  // vmaxps returns its second operand for NaN
      store_row16(y + 16 * v, m[v], a);
    }
  }
}

// Stem: output channels co .. co + R - 1 of conv row oh, after bias and ReLU,
// into rows[r * pitch + ow]. Column handling as conv_plane_s2_k3
// (stride2_k3_rows.h): per window row, the even and odd input columns of a
// 16-pixel chunk split by vpermt2ps, the column left of it moved in by valignd;
// columns outside the image load as zeros.
template <int R>
inline void stem_conv_row(const StemPlan& s, const float* x, int64_t co, int64_t oh, float* rows, int64_t pitch) {
  const __m512i even_index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_index = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 zero = _mm512_setzero_ps();
  const int64_t taps = s.cin * 9;
  const float* w = s.w + co * taps;
  for (int64_t ow0 = 0; ow0 < s.Wc; ow0 += 16) {
    const int64_t c0 = 2 * ow0;
    const __mmask16 out = first_lanes(std::min<int64_t>(16, s.Wc - ow0));
    const __mmask16 lo = first_lanes(std::min<int64_t>(16, s.W - c0));
    const __mmask16 hi = first_lanes(std::max<int64_t>(0, std::min<int64_t>(16, s.W - c0 - 16)));
    __m512 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_set1_ps(s.b[co + r]);
    for (int64_t ci = 0; ci < s.cin; ++ci) {
      for (int kh = 0; kh < 3; ++kh) {
        const int64_t ih = 2 * oh + kh - 1;
        if (ih < 0 || ih >= s.H) continue;
        const float* row = x + (ci * s.H + ih) * s.W;
        const __m512 a = load_row16(row + c0, lo), b = load_row16(row + c0 + 16, hi);
        const __m512 even = _mm512_permutex2var_ps(a, even_index, b);
        const __m512 odd = _mm512_permutex2var_ps(a, odd_index, b);
        const __m512 left = _mm512_set1_ps(ow0 > 0 ? row[c0 - 1] : 0.0f);
        const __m512 odd_left = _mm512_castsi512_ps(
            _mm512_alignr_epi32(_mm512_castps_si512(odd), _mm512_castps_si512(left), 15));
        const int64_t t = ci * 9 + kh * 3;
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          acc[r] = _mm512_fmadd_ps(odd_left, _mm512_set1_ps(w[r * taps + t]), acc[r]);
          acc[r] = _mm512_fmadd_ps(even, _mm512_set1_ps(w[r * taps + t + 1]), acc[r]);
          acc[r] = _mm512_fmadd_ps(odd, _mm512_set1_ps(w[r * taps + t + 2]), acc[r]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) store_row16(rows + r * pitch + ow0, out, _mm512_max_ps(zero, acc[r]));
  }
}

// One pooled row of the 3x3/2 max pool (padding 1): v holds the vertical
// maximum of the window's conv rows at v[1 .. Wc], -inf at v[0] and past Wc
// (at least up to 2 * Wp + 32), so the window of column pc is v[2pc .. 2pc + 2].
inline void max_pool_row(const float* v, int64_t Wp, float* y) {
  const __m512i even_index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_index = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t pc0 = 0; pc0 < Wp; pc0 += 16) {
    const float* s = v + 2 * pc0;
    const __m512 a = _mm512_loadu_ps(s), b = _mm512_loadu_ps(s + 16);
    const __m512 c = _mm512_loadu_ps(s + 1), d = _mm512_loadu_ps(s + 17);
    const __m512 left = _mm512_permutex2var_ps(a, even_index, b);
    const __m512 centre = _mm512_permutex2var_ps(c, even_index, d);
    const __m512 right = _mm512_permutex2var_ps(c, odd_index, d);
    store_row16(y + pc0, first_lanes(std::min<int64_t>(16, Wp - pc0)),
                max_keep_nan(max_keep_nan(left, centre), right));
  }
}

constexpr int kStemChannels = 8;  // conv output channels computed together

struct Avx512Stages : PortableStages {
  static void pointwise(const PointwiseLayer& L, const float* x, int64_t plane, const PointwiseOut& out, int64_t c0,
                        int64_t c1) {
    constexpr int64_t tile = 16 * kPointwiseVectors;
    const int64_t cin_g = L.cin_per_group(), cout_g = L.cout_per_group();
    float* xt = aligned_thread_scratch(cin_g * tile);
    for (int64_t g0 = c0; g0 < c1;) {
      const int64_t group = g0 / cout_g, g1 = std::min(c1, (group + 1) * cout_g);
      const float* xg = x + group * cin_g * plane;
      for (int64_t p0 = 0; p0 < plane; p0 += tile) {
        __mmask16 m[kPointwiseVectors];
        for (int v = 0; v < kPointwiseVectors; ++v)
          m[v] = first_lanes(std::clamp<int64_t>(plane - p0 - 16 * v, 0, 16));
        // The group's input tile, packed: rows of a plane are `plane` floats
        // apart (a new page every row or two), the packed tile is contiguous
        // and stays in L1 while every output channel of the group reads it.
        for (int64_t ci = 0; ci < cin_g; ++ci)
          for (int v = 0; v < kPointwiseVectors; ++v)
            _mm512_store_ps(xt + ci * tile + 16 * v, load_row16(xg + ci * plane + p0 + 16 * v, m[v]));
        int64_t co = g0;
        for (; co + kPointwiseRows <= g1; co += kPointwiseRows)
          pointwise_tile<kPointwiseRows>(L, xt, plane, co, p0, m, out);
        switch (g1 - co) {
          case 5: pointwise_tile<5>(L, xt, plane, co, p0, m, out); break;
          case 4: pointwise_tile<4>(L, xt, plane, co, p0, m, out); break;
          case 3: pointwise_tile<3>(L, xt, plane, co, p0, m, out); break;
          case 2: pointwise_tile<2>(L, xt, plane, co, p0, m, out); break;
          case 1: pointwise_tile<1>(L, xt, plane, co, p0, m, out); break;
          default: break;
        }
      }
      g0 = g1;
    }
  }

  static void depthwise3x3(const float* x, int64_t H, int64_t W, int64_t stride, const float* taps, const float* bias,
                           float* y, int64_t c0, int64_t c1) {
    const int64_t Ho = window3_out(H, stride), Wo = window3_out(W, stride);
    if (stride == 2) {
      for (int64_t c = c0; c < c1; ++c)
        conv_plane_s2_k3(x + c * H * W, H, W, taps + c * 9, bias != nullptr ? bias[c] : 0.0f, y + c * Ho * Wo);
      return;
    }
    const WindowedPlan& plan = windowed_plan_for(H, W, 3);
    constexpr int64_t kBatch = 32;
    const float* xs[kBatch];
    const float* ws[kBatch];
    float shift[kBatch];
    float* ys[kBatch];
    for (int64_t b0 = c0; b0 < c1; b0 += kBatch) {
      const int64_t count = std::min(kBatch, c1 - b0);
      for (int64_t i = 0; i < count; ++i) {
        xs[i] = x + (b0 + i) * H * W;
        ws[i] = taps + (b0 + i) * 9;
        shift[i] = bias != nullptr ? bias[b0 + i] : 0.0f;
        ys[i] = y + (b0 + i) * H * W;
      }
      conv_channels_direct<3>(plan, xs, ws, shift, ys, count);
    }
  }

  static void stem(const StemPlan& s, const float* x, float* y, int64_t r0, int64_t r1) {
    // Conv rows of the band: the windows of pooled rows r0 .. r1 - 1.
    const int64_t h0 = std::max<int64_t>(0, 2 * r0 - 1), h1 = std::min(s.Hc, 2 * r1);
    const int64_t rows = h1 - h0, pitch = s.Wc;
    const int64_t vlen = 2 * ((s.Wp + 15) / 16) * 16 + 34;
    float* conv = thread_scratch(kStemChannels * rows * pitch + vlen);
    float* v = conv + kStemChannels * rows * pitch;
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    for (int64_t co = 0; co < s.cout; co += kStemChannels) {
      const int R = static_cast<int>(std::min<int64_t>(kStemChannels, s.cout - co));
      for (int64_t oh = h0; oh < h1; ++oh) {
        float* dst = conv + (oh - h0) * pitch;
        switch (R) {
          case 8: stem_conv_row<8>(s, x, co, oh, dst, rows * pitch); break;
          case 7: stem_conv_row<7>(s, x, co, oh, dst, rows * pitch); break;
          case 6: stem_conv_row<6>(s, x, co, oh, dst, rows * pitch); break;
          case 5: stem_conv_row<5>(s, x, co, oh, dst, rows * pitch); break;
          case 4: stem_conv_row<4>(s, x, co, oh, dst, rows * pitch); break;
          case 3: stem_conv_row<3>(s, x, co, oh, dst, rows * pitch); break;
          case 2: stem_conv_row<2>(s, x, co, oh, dst, rows * pitch); break;
          default: stem_conv_row<1>(s, x, co, oh, dst, rows * pitch); break;
        }
      }
      for (int r = 0; r < R; ++r) {
        const float* plane = conv + r * rows * pitch;
        for (int64_t pr = r0; pr < r1; ++pr) {
          for (int64_t i = 0; i < vlen; ++i) v[i] = kLowest;
          for (int64_t oh = std::max<int64_t>(h0, 2 * pr - 1); oh <= std::min(h1 - 1, 2 * pr + 1); ++oh) {
            const float* src = plane + (oh - h0) * pitch;
            for (int64_t c = 0; c < s.Wc; c += 16) {
              const __mmask16 m = first_lanes(std::min<int64_t>(16, s.Wc - c));
              const __m512 cur = _mm512_loadu_ps(v + 1 + c);
              _mm512_mask_storeu_ps(v + 1 + c, m, max_keep_nan(cur, load_row16(src + c, m)));
            }
          }
          max_pool_row(v, s.Wp, y + ((co + r) * s.Hp + pr) * s.Wp);
        }
      }
    }
  }
};

using Stages = Avx512Stages;

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
