// Matrix transposes in 16 x 16 tiles of float32 registers, for the NCHW <->
// channels_last copies of the training ops (Tensor::contiguous moves these
// layouts several times slower).
#pragma once

#include "cpu/avx512/target.h"

#include "cpu/avx512/row16.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// All-lane maskz forms: GCC 12's unmasked intrinsics start from an undefined
// vector and warn (-Wmaybe-uninitialized) in its own headers.
inline __m512 unpack_lo32(__m512 a, __m512 b) { return _mm512_maskz_unpacklo_ps(0xFFFF, a, b); }
inline __m512 unpack_hi32(__m512 a, __m512 b) { return _mm512_maskz_unpackhi_ps(0xFFFF, a, b); }
inline __m512 unpack_lo64(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(0xFF, _mm512_castps_pd(a), _mm512_castps_pd(b)));
}
inline __m512 unpack_hi64(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(0xFF, _mm512_castps_pd(a), _mm512_castps_pd(b)));
}
// 128-bit lanes (a.0, a.2, b.0, b.2) / (a.1, a.3, b.1, b.3).
inline __m512 even_lanes128(__m512 a, __m512 b) { return _mm512_maskz_shuffle_f32x4(0xFFFF, a, b, 0x88); }
inline __m512 odd_lanes128(__m512 a, __m512 b) { return _mm512_maskz_shuffle_f32x4(0xFFFF, a, b, 0xDD); }

// b[j * rows + i] = a[i * cols + j] for the tile i0 <= i < i0 + ri, j0 <= j < j0 + cj
// (ri, cj <= 16; both 16 when Full: no masks, no per-row tests).
template <bool Full>
inline void transpose_tile16(const float* a, int64_t rows, int64_t cols, int64_t i0, int64_t j0, int64_t ri, int64_t cj,
                           float* b) {
  if constexpr (Full) ri = cj = 16;
  // Rows past ri load as zeros and columns past cj are never stored.
  __m512 r[16];
  const __mmask16 cm = first_lanes(cj);
  for (int i = 0; i < 16; ++i) {
    if constexpr (Full) {
      r[i] = _mm512_loadu_ps(a + (i0 + i) * cols + j0);
    } else {
      if (i < ri) check_masked(a + (i0 + i) * cols + j0, cm, "transpose_tile16 load");
      r[i] = i < ri ? _mm512_maskz_loadu_ps(cm, a + (i0 + i) * cols + j0) : _mm512_setzero_ps();
    }
  }
  // Pairs of rows interleaved (32-bit), then pairs of pairs (64-bit): each
  // 128-bit lane of u[4q + k] then holds column k, k + 4, k + 8 or k + 12
  // (one per lane) of rows 4q .. 4q + 3.
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = unpack_lo32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = unpack_hi32(r[2 * i], r[2 * i + 1]);
  }
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = unpack_lo64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = unpack_hi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = unpack_lo64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = unpack_hi64(t[4 * q + 1], t[4 * q + 3]);
  }
  // Output row (column of a) k + 4m gathers 128-bit lane m of u[k], u[4 + k],
  // u[8 + k], u[12 + k].
  const __mmask16 rm = first_lanes(ri);
  for (int k = 0; k < 4; ++k) {
    const __m512 even0 = even_lanes128(u[k], u[4 + k]), even1 = even_lanes128(u[8 + k], u[12 + k]);
    const __m512 odd0 = odd_lanes128(u[k], u[4 + k]), odd1 = odd_lanes128(u[8 + k], u[12 + k]);
    const __m512 col[4] = {even_lanes128(even0, even1), even_lanes128(odd0, odd1), odd_lanes128(even0, even1),
                           odd_lanes128(odd0, odd1)};
    for (int m = 0; m < 4; ++m) {
      const int j = k + 4 * m;
      if constexpr (Full) {
        _mm512_storeu_ps(b + (j0 + j) * rows + i0, col[m]);
      } else if (j < cj) {
        check_masked(b + (j0 + j) * rows + i0, rm, "transpose_tile16 store");
        _mm512_mask_storeu_ps(b + (j0 + j) * rows + i0, rm, col[m]);
      }
    }
  }
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
