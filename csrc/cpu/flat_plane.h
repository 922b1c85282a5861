// Flat-stack building blocks of the CPU kernels.
//
// The planes of ONE channel (several batch entries n) are staged one below
// the other into a zero-padded buffer with row pitch Wp = W + 2*pad; plane n
// starts at row n*R + pad, with R = H + pad (rounded up to a multiple of S)
// so consecutive planes are separated by at least `pad` zero rows. Output j
// of the "flat" conv, j = orow * Wp + ow, reads the stack at
//   S * j + kh * Wp + kw   (= (S*orow + kh) * Wp + S*ow + kw),
// and plane n's outputs are the rows n*R/S .. n*R/S + Ho - 1. So the conv of
// a whole block of planes is ONE long vector loop, whatever H and W are; the
// columns past Wo and the rows between planes are computed and dropped. On
// ShuffleNet's 7x7 and 14x14 planes this is the difference between scalar
// row tails plus per-plane setup and full vectors.
//
// This header is included after the target pragma of each ISA translation
// unit (kernels_*.cpp): it must not include anything itself, and the hot loops
// call no out-of-line library code (setup.py builds with
// -fno-tree-loop-distribute-patterns so row copies are not turned into
// memcpy calls, which cost more than the copy for 7-float rows).

#ifndef SF_CPU_ISA
#error "flat_plane.h is included by csrc/cpu/kernels_*.cpp only"
#endif

// Elements of one staged block; several buffers of this size per thread stay in L2.
constexpr int64_t kStackElements = 16384;

struct FlatStack {
  int64_t H, W, Ho, Wo, K, S, pad;
  int64_t Wp;      // row pitch of staged planes and of flat outputs: W + 2*pad
  int64_t R;       // staged rows per plane (plane pitch in rows), a multiple of S
  int64_t Ro;      // flat output rows per plane: R / S
  int64_t planes;  // planes per block
  int64_t rows;    // rows of a staged buffer; flat reads past the last plane stay inside

  FlatStack(const ConvGeometry& g)
      : H(g.H), W(g.W), Ho(g.Ho), Wo(g.Wo), K(g.K), S(g.stride), pad(conv_pad(g.K)) {
    Wp = W + 2 * pad;
    R = H + pad;
    R += (S - R % S) % S;
    Ro = R / S;
    planes = std::max<int64_t>(1, std::min<int64_t>(g.N, kStackElements / (R * Wp)));
    // The flat conv of `planes` planes reads up to row planes*R + K - 1 (the
    // stride-1 gather for grad_input reads the same extent of the staged dz).
    rows = planes * R + K;
  }
  int64_t buffer_size() const { return rows * Wp; }
  int64_t flat_size(int64_t nb) const { return nb * Ro * Wp; }
  int64_t in_offset(int64_t n) const { return (n * R + pad) * Wp + pad; }  // plane n's interior
  int64_t out_offset(int64_t n) const { return n * Ro * Wp; }             // plane n's flat outputs
  int64_t blocks(int64_t N) const { return (N + planes - 1) / planes; }
};

template <typename T>
inline void fill_zero(T* __restrict p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = T(0);
}

// Row loops over ShuffleNet's 7- and 14-wide planes are too short for the
// vectoriser (they run as scalar tails), and bfloat16/float16 elements are
// converted one by one. On AVX-512, rows of up to 16 elements of float,
// bfloat16 or float16 are moved with one masked load/store, widened to and
// narrowed from float32 in registers.
#if defined(SF_CPU_HAS_AVX512)
template <typename T>
constexpr bool kRow16 = std::is_same<T, float>::value || std::is_same<T, c10::BFloat16>::value ||
                        std::is_same<T, c10::Half>::value;

// (maskz forms throughout: GCC 12's unmasked forms of these intrinsics start
// from an undefined vector and trip -Wmaybe-uninitialized in its own headers.)
inline __m512 load_row16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load_row16(const c10::BFloat16* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(m, _mm512_maskz_cvtepu16_epi32(m, h), 16));
}
inline __m512 load_row16(const c10::Half* p, __mmask16 m) {
  return _mm512_maskz_cvtph_ps(m, _mm256_maskz_loadu_epi16(m, p));
}

inline void store_row16(float* p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
// Round to nearest even, NaN -> quiet NaN 0x7FC0: c10::BFloat16's conversion, bit for bit.
inline void store_row16(c10::BFloat16* p, __mmask16 m, __m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(m, bits, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_maskz_srli_epi32(m, _mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_maskz_cvtepi32_epi16(m, r));
}
// IEEE round to nearest even, as c10::Half's conversion.
inline void store_row16(c10::Half* p, __mmask16 m, __m512 v) {
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
#endif

// dst[r, c] = a * src[r, c] + b for a rows x cols block (pitches in elements).
template <typename scalar_t, typename acc_t>
inline void affine_block(const acc_t* __restrict src, int64_t src_pitch, int64_t rows, int64_t cols,
                         scalar_t* __restrict dst, int64_t dst_pitch, acc_t a, acc_t b) {
#if defined(SF_CPU_HAS_AVX512)
  if constexpr (kRow16<scalar_t> && std::is_same<acc_t, float>::value) {
    move_rows16<true>(src, src_pitch, rows, cols, dst, dst_pitch, _mm512_set1_ps(a), _mm512_set1_ps(b));
    return;
  }
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* s = src + r * src_pitch;
    scalar_t* d = dst + r * dst_pitch;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = static_cast<scalar_t>(s[c] * a + b);
  }
}

// Copies a rows x cols block (source pitch src_pitch) to dst with pitch
// dst_pitch, converting between the element types (either direction). The
// gap between dst rows (dst_pitch > cols) may be overwritten with zeros:
// every caller's gap is zero padding or dropped flat outputs.
template <typename src_t, typename dst_t>
inline void copy_block(const src_t* __restrict src, int64_t src_pitch, int64_t rows, int64_t cols,
                       dst_t* __restrict dst, int64_t dst_pitch) {
#if defined(SF_CPU_HAS_AVX512)
  if constexpr (kRow16<src_t> && kRow16<dst_t>) {
    move_rows16<false>(src, src_pitch, rows, cols, dst, dst_pitch, _mm512_setzero_ps(), _mm512_setzero_ps());
    return;
  }
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const src_t* s = src + r * src_pitch;
    dst_t* d = dst + r * dst_pitch;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = static_cast<dst_t>(s[c]);
  }
}

// z[j] = sum_{kh,kw} w[kh*K+kw] * xp[S*j + kh*Wp + kw] for j in [0, n).
template <int K, int S, typename acc_t>
inline void conv_flat(const acc_t* __restrict xp, int64_t Wp, int64_t n, const acc_t* __restrict w,
                      acc_t* __restrict z) {
  acc_t wr[K * K];
  for (int t = 0; t < K * K; ++t) wr[t] = w[t];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    acc_t a = 0;
#pragma GCC unroll 7
    for (int kh = 0; kh < K; ++kh) {
#pragma GCC unroll 7
      for (int kw = 0; kw < K; ++kw) a += wr[kh * K + kw] * xp[S * j + kh * Wp + kw];
    }
    z[j] = a;
  }
}

// Blocks of kDotBlock elements are reduced in acc_t vector lanes and the
// blocks added in double, so long reductions keep float32 results accurate.
constexpr int64_t kDotBlock = 1024;

// gw[kh*K + kw] += sum_j dz[j] * xp[S*j + kh*Wp + kw] for j in [0, n): the
// conv-weight gradient, all K*K taps in ONE pass over dz (each dz vector is
// loaded once for K*K products, instead of K*K passes that reload it). The
// partial sums are explicit lanes, part[tap][l], so that the compiler keeps
// them in vector registers without needing an array reduction clause.
template <int K, int S, typename acc_t>
inline void weight_grad_flat(const acc_t* __restrict dz, const acc_t* __restrict xp, int64_t Wp, int64_t n,
                             double* __restrict gw) {
  constexpr int L = 16;
  for (int64_t j0 = 0; j0 < n; j0 += kDotBlock) {
    const int64_t j1 = std::min(n, j0 + kDotBlock);
    acc_t part[K * K][L] = {};
    int64_t j = j0;
    for (; j + L <= j1; j += L) {
#pragma GCC unroll 7
      for (int kh = 0; kh < K; ++kh) {
#pragma GCC unroll 7
        for (int kw = 0; kw < K; ++kw) {
          const acc_t* x = xp + S * j + kh * Wp + kw;
#pragma omp simd
          for (int l = 0; l < L; ++l) part[kh * K + kw][l] += dz[j + l] * x[S * l];
        }
      }
    }
    for (; j < j1; ++j)
      for (int kh = 0; kh < K; ++kh)
        for (int kw = 0; kw < K; ++kw) part[kh * K + kw][0] += dz[j] * xp[S * j + kh * Wp + kw];
    for (int t = 0; t < K * K; ++t) {
      acc_t s = 0;
      for (int l = 0; l < L; ++l) s += part[t][l];
      gw[t] += static_cast<double>(s);
    }
  }
}

// out[2j] = in[j], out[2j+1] = 0 for j in [0, n): the stride-2 dz "dilated"
// onto the staged-input grid, so that grad_input becomes a stride-1 gather
// (conv_flat with the flipped kernel) instead of a strided scatter. Writing
// the zeros too keeps the store contiguous (an interleave, not a scatter).
template <typename acc_t>
inline void dilate2_flat(const acc_t* __restrict in, int64_t n, acc_t* __restrict out) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    out[2 * j] = in[j];
    out[2 * j + 1] = acc_t(0);
  }
}
