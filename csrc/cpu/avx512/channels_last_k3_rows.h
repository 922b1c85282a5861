// channels_last (NHWC) eval rows with AVX-512: a 3x3 conv vectorised over
// channels with four output pixels per register block, and the channel
// shuffle as masked in-register permutes.
//
// Conv: for a 16-channel chunk the 9 folded taps stay in registers over a
// whole output row; four neighbouring output pixels are computed together,
// so each input vector loaded serves up to three of them (3 + 3 loads per
// 4 x 3 FMAs of a window row instead of one load per FMA). Pixels whose window
// crosses the left or right border are computed one by one over their valid
// taps only (padding is never multiplied, as in the scalar kernel).
//
// Shuffle: in NHWC it is the same permutation of the C channels at every
// pixel, y[o] = z[src[o]]. For each 16-lane output chunk, its lanes are
// grouped by the 16-element block of z their source lies in; each group is
// one vpermps of that block, merged under the group's lane mask. ShuffleNet's
// maps touch 3 to 6 blocks per chunk, instead of 16 scalar moves.
#pragma once

#include "cpu/avx512/target.h"

#include <vector>

#include "cpu/avx512/row16.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// The 16-lane chunks covering C channels: full chunks, then one ending at C
// (overlapping the previous one: it rewrites the same values) or, for C < 16,
// one masked chunk. Calls f(c, mask) per chunk.
template <typename F>
inline void for_each_channel_chunk(int64_t C, const F& f) {
  const __mmask16 m = first_lanes(std::min<int64_t>(16, C));
  for (int64_t c0 = 0; c0 < C; c0 += 16) f(std::min(c0, std::max<int64_t>(C - 16, 0)), m);
}

// z[ow * C + c .. + 16] (one channel chunk, mask m) of output pixels ow0 ..
// ow0 + NS - 1 of row oh: taps wv (tap-major, folded BN), shift sv. `xn` is
// the batch entry (NHWC). With Interior, every window column is inside the
// image; otherwise NS is 1 and the pixel's invalid columns are skipped.
template <int S, int NS, bool Interior, typename scalar_t>
inline void cl_pixels_k3(const scalar_t* xn, int64_t H, int64_t W, int64_t C, int64_t oh, int64_t ow0, int64_t c,
                         __mmask16 m, const __m512* wv, __m512 sv, float* z) {
  constexpr int K = 3, NI = (NS - 1) * S + K;
  static_assert(Interior || NS == 1, "border pixels are computed one at a time");
  const int64_t iw0 = ow0 * S - 1;
  int kw0 = 0, kw1 = K;
  if constexpr (!Interior) {
    kw0 = static_cast<int>(std::max<int64_t>(0, -iw0));
    kw1 = static_cast<int>(std::min<int64_t>(K, W - iw0));
  }
  __m512 acc[NS];
  for (int j = 0; j < NS; ++j) acc[j] = sv;
  for (int kh = 0; kh < K; ++kh) {
    const int64_t ih = oh * S - 1 + kh;
    if (ih < 0 || ih >= H) continue;
    const scalar_t* row = xn + (ih * W + iw0) * C + c;
    if constexpr (Interior) {
      __m512 in[NI];
      if constexpr (std::is_same<scalar_t, float>::value) {
        if (m == 0xFFFF) {
          for (int i = 0; i < NI; ++i) in[i] = _mm512_loadu_ps(row + i * C);
        } else {
          for (int i = 0; i < NI; ++i) in[i] = load_row16(row + i * C, m);
        }
      } else {
        for (int i = 0; i < NI; ++i) in[i] = load_row16(row + i * C, m);
      }
      for (int j = 0; j < NS; ++j)
        for (int kw = 0; kw < K; ++kw) acc[j] = _mm512_fmadd_ps(in[j * S + kw], wv[kh * K + kw], acc[j]);
    } else {
      for (int kw = kw0; kw < kw1; ++kw) acc[0] = _mm512_fmadd_ps(load_row16(row + kw * C, m), wv[kh * K + kw], acc[0]);
    }
  }
  for (int j = 0; j < NS; ++j) {
    check_masked(z + (ow0 + j) * C + c, m, "cl_row strip store");
    _mm512_mask_storeu_ps(z + (ow0 + j) * C + c, m, acc[j]);
  }
}

// z = the conv of output row oh (all Wo pixels, all C channels, input-channel
// order) for a 3x3 kernel of stride S; wt is [9][C] (folded), shift [C].
template <int S, typename scalar_t>
inline void cl_row_k3(const scalar_t* xn, int64_t H, int64_t W, int64_t C, int64_t oh, int64_t Wo, const float* wt,
                      const float* shift, float* z) {
  constexpr int kStrip = 4;
  for_each_channel_chunk(C, [&](int64_t c, __mmask16 m) {
    __m512 wv[9];
    for (int t = 0; t < 9; ++t) {
      check_masked(wt + t * C + c, m, "cl_row_k3 taps");
      wv[t] = _mm512_maskz_loadu_ps(m, wt + t * C + c);
    }
    check_masked(shift + c, m, "cl_row_k3 shift");
    const __m512 sv = _mm512_maskz_loadu_ps(m, shift + c);
    int64_t ow = 0;
    // Left border (input column -1), then 4-pixel blocks while the whole
    // window stays inside, then the rest one by one.
    for (; ow < Wo && ow * S - 1 < 0; ++ow) cl_pixels_k3<S, 1, false>(xn, H, W, C, oh, ow, c, m, wv, sv, z);
    for (; ow + kStrip <= Wo && (ow + kStrip - 1) * S + 1 < W; ow += kStrip)
      cl_pixels_k3<S, kStrip, true>(xn, H, W, C, oh, ow, c, m, wv, sv, z);
    for (; ow < Wo; ++ow) {
      if (ow * S + 1 < W) {
        cl_pixels_k3<S, 1, true>(xn, H, W, C, oh, ow, c, m, wv, sv, z);
      } else {
        cl_pixels_k3<S, 1, false>(xn, H, W, C, oh, ow, c, m, wv, sv, z);
      }
    }
  });
}

// y[o] = z[src[o]] for every pixel, as masked permutes of z's 16-lane blocks.
struct ClPermutePlan {
  struct Part {
    int64_t block;      // z block (elements 16*block .. 16*block + 15)
    __mmask16 lanes;    // output lanes taken from it
    int64_t index;      // offset of the part's 16 lane indices in `indices`
  };
  std::vector<int64_t> chunk_parts;  // parts of chunk k: [chunk_parts[k], chunk_parts[k+1])
  std::vector<Part> parts;
  std::vector<int32_t> indices;

  ClPermutePlan(const std::vector<int32_t>& src, int64_t C) {
    chunk_parts.push_back(0);
    for_each_channel_chunk(C, [&](int64_t c, __mmask16 m) {
      const int64_t first = static_cast<int64_t>(parts.size());
      for (int l = 0; l < 16; ++l) {
        if (!(m >> l & 1)) continue;
        const int64_t s = src[c + l], block = s / 16;
        int64_t k = first;
        while (k < static_cast<int64_t>(parts.size()) && parts[k].block != block) ++k;
        if (k == static_cast<int64_t>(parts.size())) {
          parts.push_back({block, 0, static_cast<int64_t>(indices.size())});
          indices.resize(indices.size() + 16, 0);
        }
        parts[k].lanes |= static_cast<__mmask16>(1u << l);
        indices[parts[k].index + l] = static_cast<int32_t>(s % 16);
      }
      chunk_parts.push_back(static_cast<int64_t>(parts.size()));
    });
  }

  // A row of `pixels` pixels of C channels (z may be read up to 16 elements
  // past its end). Four pixels at a time, so each part's index vector and
  // mask are loaded once for four independent merge chains.
  template <typename scalar_t>
  void apply_row(const float* z, int64_t pixels, int64_t C, scalar_t* y) const {
    int64_t k = 0;
    for_each_channel_chunk(C, [&](int64_t c, __mmask16 m) {
      const int64_t p0 = chunk_parts[k], p1 = chunk_parts[k + 1];
      int64_t px = 0;
      for (; px + 4 <= pixels; px += 4) {
        __m512 out[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t i = p0; i < p1; ++i) {
          const Part& part = parts[i];
          const __m512i idx = _mm512_loadu_si512(indices.data() + part.index);
          const float* zb = z + px * C + 16 * part.block;
          for (int j = 0; j < 4; ++j)
            out[j] = _mm512_mask_permutexvar_ps(out[j], part.lanes, idx, _mm512_loadu_ps(zb + j * C));
        }
        for (int j = 0; j < 4; ++j) store_row16(y + (px + j) * C + c, m, out[j]);
      }
      for (; px < pixels; ++px) {
        __m512 out = _mm512_setzero_ps();
        for (int64_t i = p0; i < p1; ++i) {
          const Part& part = parts[i];
          const __m512i idx = _mm512_loadu_si512(indices.data() + part.index);
          out = _mm512_mask_permutexvar_ps(out, part.lanes, idx, _mm512_loadu_ps(z + px * C + 16 * part.block));
        }
        store_row16(y + px * C + c, m, out);
      }
      ++k;
    });
  }
};

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
