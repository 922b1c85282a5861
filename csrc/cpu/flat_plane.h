// Flat-plane building blocks of the CPU kernels.
//
// A plane is staged into a zero-padded buffer with row pitch Wp. Output j of
// the "flat" conv, j = oh * Wp + ow, reads the padded input at
//   S * j + kh * Wp + kw   (= (S*oh + kh) * Wp + S*ow + kw),
// so a whole plane is ONE long vector loop instead of Ho short ones; the
// Wp - Wo columns per output row past the real output are computed and
// dropped (2*pad of Wp at stride 1, about half at stride 2). On ShuffleNet's
// 7x7 and 14x14 planes this is the difference between scalar tails and full
// vectors.
//
// This header is included after the target pragma of each ISA translation
// unit (kernels_*.cpp): it must not include anything itself, and the hot loops
// call no out-of-line library code.

#ifndef SF_CPU_ISA
#error "flat_plane.h is included by csrc/cpu/kernels_*.cpp only"
#endif

struct FlatPlane {
  int64_t H, W, Ho, Wo, K, S, pad;
  int64_t Wp;    // row pitch of padded planes and of flat outputs: W + 2*pad
  int64_t Q;     // = Wp, named for readability where a flat output row is meant
  int64_t rows;  // rows of a padded buffer; flat reads past the last real row stay inside

  explicit FlatPlane(const ConvGeometry& g)
      : H(g.H), W(g.W), Ho(g.Ho), Wo(g.Wo), K(g.K), S(g.stride), pad(conv_pad(g.K)) {
    Wp = W + 2 * pad;
    Q = Wp;
    // The flat conv reads up to index (S*Ho + K - 1) * Wp + K - 1 - S, the
    // stride-1 gather for grad_input the same extent of the padded dz; the
    // staged plane itself needs H + K - 1 rows.
    rows = std::max<int64_t>(H + K - 1, S * Ho + K);
  }
  int64_t buffer_size() const { return rows * Wp; }
  int64_t flat_size() const { return Ho * Q; }
  int64_t interior_offset() const { return pad * Wp + pad; }
};

template <typename T>
inline void fill_zero(T* __restrict p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = T(0);
}

// Copies a rows x cols block (source pitch src_pitch) to dst with pitch dst_pitch.
template <typename scalar_t, typename acc_t>
inline void copy_block(const scalar_t* __restrict src, int64_t src_pitch, int64_t rows, int64_t cols,
                       acc_t* __restrict dst, int64_t dst_pitch) {
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* s = src + r * src_pitch;
    acc_t* d = dst + r * dst_pitch;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = static_cast<acc_t>(s[c]);
  }
}

// Stages an H x W input plane into the interior of a padded buffer whose
// border was zeroed once (it is never written).
template <typename scalar_t, typename acc_t>
inline void load_interior(const scalar_t* __restrict src, const FlatPlane& f, acc_t* __restrict buf) {
  copy_block(src, f.W, f.H, f.W, buf + f.interior_offset(), f.Wp);
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

// sum_j a[j] * b[S*j]: blocks of kDotBlock reduced in acc_t vector lanes,
// blocks added in double, so large planes keep float32 gradients accurate.
constexpr int64_t kDotBlock = 1024;

template <int S, typename acc_t>
inline double dot_flat(const acc_t* __restrict a, const acc_t* __restrict b, int64_t n) {
  double total = 0;
  for (int64_t j0 = 0; j0 < n; j0 += kDotBlock) {
    const int64_t j1 = std::min(n, j0 + kDotBlock);
    acc_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = j0; j < j1; ++j) s += a[j] * b[S * j];
    total += static_cast<double>(s);
  }
  return total;
}

// Stride-2 transposed conv: gp[2j + kh*Wp + kw] += w[kh,kw] * dz[j], with the
// garbage columns of dz zero. gp must be zeroed by the caller.
template <int K, typename acc_t>
inline void scatter_flat_s2(const acc_t* __restrict dz, int64_t Wp, int64_t n, const acc_t* __restrict w,
                            acc_t* __restrict gp) {
  for (int kh = 0; kh < K; ++kh) {
    for (int kw = 0; kw < K; ++kw) {
      const acc_t wv = w[kh * K + kw];
      acc_t* g = gp + kh * Wp + kw;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) g[2 * j] += wv * dz[j];
    }
  }
}
