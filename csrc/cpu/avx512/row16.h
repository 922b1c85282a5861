// Rows of up to 16 elements of float, bfloat16 or float16 moved with one
// masked load/store, widened to and narrowed from float32 in registers. Row
// loops over ShuffleNet's 7- and 14-wide planes are too short for the
// vectoriser (they run as scalar tails), and 16-bit elements would otherwise
// be converted one by one.
#pragma once

#include "cpu/avx512/target.h"

#include "cpu/avx512/masked_access.h"

#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

template <typename T>
constexpr bool kRow16 = std::is_same<T, float>::value || std::is_same<T, c10::BFloat16>::value ||
                        std::is_same<T, c10::Half>::value;

// (maskz forms throughout: GCC 12's unmasked forms of these intrinsics start
// from an undefined vector and trip -Wmaybe-uninitialized in its own headers.)
inline __m512 load_row16(const float* p, __mmask16 m) {
  check_masked(p, m, "load_row16");
  return _mm512_maskz_loadu_ps(m, p);
}
inline __m512 load_row16(const c10::BFloat16* p, __mmask16 m) {
  check_masked(p, m, "load_row16");
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(m, _mm512_maskz_cvtepu16_epi32(m, h), 16));
}
inline __m512 load_row16(const c10::Half* p, __mmask16 m) {
  check_masked(p, m, "load_row16");
  return _mm512_maskz_cvtph_ps(m, _mm256_maskz_loadu_epi16(m, p));
}

inline void store_row16(float* p, __mmask16 m, __m512 v) {
  check_masked(p, m, "store_row16");
  _mm512_mask_storeu_ps(p, m, v);
}
// Round to nearest even, NaN -> quiet NaN 0x7FC0: c10::BFloat16's conversion, bit for bit.
inline void store_row16(c10::BFloat16* p, __mmask16 m, __m512 v) {
  check_masked(p, m, "store_row16");
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(m, bits, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_maskz_srli_epi32(m, _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_maskz_cvtepi32_epi16(m, r));
}
// IEEE round to nearest even, as c10::Half's conversion.
inline void store_row16(c10::Half* p, __mmask16 m, __m512 v) {
  check_masked(p, m, "store_row16");
  _mm256_mask_storeu_epi16(p, m, _mm512_maskz_cvtps_ph(m, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

constexpr __mmask16 first_lanes(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// A row of cols <= 16 elements may be stored as a full 16-lane vector, which
// is cheaper than a masked store, when the 16 - cols extra lanes stay inside
// the block (they land on later rows, rewritten afterwards, or on the gap
// between rows, which the caller allows): row r of `rows` with pitch `pitch`.
inline bool full_store_fits(int64_t r, int64_t rows, int64_t pitch, int64_t cols) {
  return r * pitch + 16 <= (rows - 1) * pitch + cols;
}

// dst[r, c] = src[r, c] (kAffine false) or a * src[r, c] + b (kAffine true)
// for a rows x cols block, 16 lanes at a time. A plain move turns the
// zero-masked lanes into zeros, so the extra lanes of a full-width store may
// land on the gap between dst rows (callers' gaps are zero padding or dropped
// flat outputs); an affine move would write b there, so it stores full-width
// only where dst rows are back to back. (A template flag rather than a lambda:
// GCC compiles lambdas without the translation unit's target pragma.)
template <bool kAffine, typename src_t, typename dst_t>
inline void move_rows16(const src_t* src, int64_t src_pitch, int64_t rows, int64_t cols, dst_t* dst,
                        int64_t dst_pitch, __m512 a, __m512 b) {
  const bool full_ok = cols <= 16 && (!kAffine || dst_pitch == cols);
  for (int64_t r = 0; r < rows; ++r) {
    const src_t* s = src + r * src_pitch;
    dst_t* d = dst + r * dst_pitch;
    if (full_ok && full_store_fits(r, rows, dst_pitch, cols)) {
      const __m512 v = load_row16(s, first_lanes(cols));
      store_row16(d, first_lanes(16), kAffine ? _mm512_fmadd_ps(v, a, b) : v);
      continue;
    }
    for (int64_t c = 0; c < cols; c += 16) {
      const __mmask16 m = first_lanes(std::min<int64_t>(16, cols - c));
      const __m512 v = load_row16(s + c, m);
      store_row16(d + c, m, kAffine ? _mm512_fmadd_ps(v, a, b) : v);
    }
  }
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
