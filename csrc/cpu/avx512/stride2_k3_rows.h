// Stride-2 3x3 convolution of compact planes with AVX-512, row by row: no
// staging copy and no dropped outputs (the flat kernels of flat_stack.h
// compute every column and row of a padded stack and drop the odd ones).
//
// An output chunk of 16 pixels (ow0 .. ow0 + 15 of output row oh) reads,
// per window row, the 32 input columns 2*ow0 .. 2*ow0 + 31: two loads, split
// by two vpermt2ps into the even columns (tap kw = 1) and the odd ones (tap
// kw = 2); tap kw = 0 reads column 2*ow - 1, the odd columns moved one lane
// right with the column left of the chunk entering lane 0 (valignd). Taps
// outside the image are dropped by masked FMAs, as in the windowed kernels.
#pragma once

#include "cpu/avx512/target.h"

#include "cpu/avx512/row16.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// y = shift + conv(x, w) for one H x W plane, 3x3, stride 2, padding 1;
// y is Ho x Wo, compact.
template <typename in_t, typename out_t>
inline void conv_plane_s2_k3(const in_t* x, int64_t H, int64_t W, const float* w, float shift, out_t* y) {
  const int64_t Ho = (H + 1) / 2, Wo = (W + 1) / 2;
  __m512 wv[9];
  for (int t = 0; t < 9; ++t) wv[t] = _mm512_set1_ps(w[t]);
  const __m512 sv = _mm512_set1_ps(shift);
  const __m512i even_index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_index = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int64_t ow0 = 0; ow0 < Wo; ow0 += 16) {
    const int64_t lanes = std::min<int64_t>(16, Wo - ow0), c0 = 2 * ow0;
    const __mmask16 out = first_lanes(lanes);
    // Input columns c0 .. c0 + 31 that exist; tap kw = 0 is invalid in lane 0
    // of the first chunk (column -1), tap kw = 2 where 2*ow + 1 >= W.
    const __mmask16 lo = first_lanes(std::min<int64_t>(16, W - c0));
    const __mmask16 hi = first_lanes(std::max<int64_t>(0, std::min<int64_t>(16, W - c0 - 16)));
    const __mmask16 m0 = ow0 == 0 ? static_cast<__mmask16>(out & 0xFFFE) : out;
    const __mmask16 m2 = first_lanes(std::min<int64_t>(lanes, (W - c0) / 2));
    for (int64_t oh = 0; oh < Ho; ++oh) {
      __m512 acc = sv;
      for (int kh = 0; kh < 3; ++kh) {
        const int64_t ih = 2 * oh + kh - 1;
        if (ih < 0 || ih >= H) continue;
        const in_t* row = x + ih * W;
        const __m512 a = load_row16(row + c0, lo), b = load_row16(row + c0 + 16, hi);
        const __m512 even = _mm512_permutex2var_ps(a, even_index, b);
        const __m512 odd = _mm512_permutex2var_ps(a, odd_index, b);
        const __m512 left = _mm512_set1_ps(ow0 > 0 ? static_cast<float>(row[c0 - 1]) : 0.0f);
        const __m512 odd_left = _mm512_castsi512_ps(
            _mm512_maskz_alignr_epi32(0xFFFF, _mm512_castps_si512(odd), _mm512_castps_si512(left), 15));
        acc = _mm512_mask3_fmadd_ps(odd_left, wv[3 * kh + 0], acc, m0);
        acc = _mm512_mask3_fmadd_ps(even, wv[3 * kh + 1], acc, out);
        acc = _mm512_mask3_fmadd_ps(odd, wv[3 * kh + 2], acc, m2);
      }
      store_row16(y + oh * Wo + ow0, out, acc);
    }
  }
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
