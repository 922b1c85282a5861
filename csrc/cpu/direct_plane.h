// Stride-1 depthwise conv of a compact plane straight from memory, with
// AVX-512 masked loads: no staging copy, no padding, no wasted outputs.
//
// Output vector v covers outputs j = 16v .. 16v+15 of the H x W plane
// (row-major). At stride 1, tap (kh, kw) of output j reads input
// j + (kh - pad) * W + (kw - pad): the same offset for the whole vector. The
// lanes whose tap falls outside the image (first/last rows and columns, or
// past the plane) are switched off by a lane mask precomputed once per
// geometry; a masked-off lane is never read, so the loads that start before
// or run past the plane touch only the plane's own elements.
//
// Included by kernels.h inside the per-ISA namespace (see flat_plane.h).

#ifndef SF_CPU_ISA
#error "direct_plane.h is included by csrc/cpu/kernels_*.cpp only"
#endif

// Whether a kernel of stride S on scalar_t data (accumulated in acc_t) takes
// the in-place path of this file: AVX-512, stride 1, float/bfloat16/float16.
template <int S, typename scalar_t, typename acc_t>
constexpr bool uses_direct_conv() {
#if defined(SF_CPU_HAS_AVX512)
  return S == 1 && kRow16<scalar_t> && std::is_same<acc_t, float>::value;
#else
  return false;
#endif
}

#if defined(SF_CPU_HAS_AVX512)

// Lane masks of every (output vector, tap) of one plane geometry, and, where
// every tap offset (kh - pad) * W + (kw - pad) lies within +-15 elements
// (`windowed`: K = 3 and W <= 14, ShuffleNet's 7x7 and 14x14 layers), the
// vpermt2ps index vector of each tap: tap (kh, kw) of output vector v is then
// a two-register permute of input vectors v-1, v (negative offsets) or v, v+1
// (positive ones), so each input vector is loaded once instead of K*K times.
struct DirectPlan {
  int64_t H, W, K, pad, plane, vectors;
  std::vector<__mmask16> masks;  // [v * K * K + kh * K + kw]
  bool windowed;
  std::vector<int32_t> window_index;  // [(kh * K + kw) * 16 + lane]

  DirectPlan(int64_t H_, int64_t W_, int64_t K_)
      : H(H_), W(W_), K(K_), pad(conv_pad(K_)), plane(H_ * W_), vectors((H_ * W_ + 15) / 16) {
    // W > pad makes the sign of an offset that of kh - pad (or of kw - pad on
    // the centre row), which the windowed kernels rely on.
    windowed = W > pad && pad * (W + 1) <= 15;
    if (windowed) {
      window_index.resize(K * K * 16);
      for (int64_t t = 0; t < K * K; ++t) {
        const int64_t off = (t / K - pad) * W + (t % K - pad);
        for (int64_t l = 0; l < 16; ++l) window_index[t * 16 + l] = static_cast<int32_t>(off < 0 ? l + 16 + off : l + off);
      }
    }
    masks.assign(vectors * K * K, 0);
    // Tap (kh, kw) is valid where row oh + kh - pad and column ow + kw - pad
    // are inside: a row mask per kh and a column mask per kw, ANDed.
    std::vector<__mmask16> row(K), col(K);
    for (int64_t v = 0; v < vectors; ++v) {
      std::fill(row.begin(), row.end(), 0);
      std::fill(col.begin(), col.end(), 0);
      int64_t oh = 16 * v / W, ow = 16 * v % W;
      for (int64_t l = 0; l < 16 && 16 * v + l < plane; ++l) {
        for (int64_t k = 0; k < K; ++k) {
          if (oh + k - pad >= 0 && oh + k - pad < H) row[k] |= static_cast<__mmask16>(1u << l);
          if (ow + k - pad >= 0 && ow + k - pad < W) col[k] |= static_cast<__mmask16>(1u << l);
        }
        if (++ow == W) ow = 0, ++oh;
      }
      for (int64_t kh = 0; kh < K; ++kh)
        for (int64_t kw = 0; kw < K; ++kw) masks[v * K * K + kh * K + kw] = row[kh] & col[kw];
    }
  }
};

// The plan of an H x W x K geometry, built once per calling thread: a model
// has a handful of distinct geometries, and building the masks of a 56x56
// plane costs about as much as convolving a few of its planes.
inline const DirectPlan& direct_plan_for(int64_t H, int64_t W, int64_t K) {
  thread_local std::vector<std::unique_ptr<DirectPlan>> cache;
  for (const auto& p : cache)
    if (p->H == H && p->W == W && p->K == K) return *p;
  if (cache.size() >= 16) cache.clear();
  cache.push_back(std::make_unique<DirectPlan>(H, W, K));
  return *cache.back();
}

// `p` moved by `elements` (possibly outside the plane) without pointer
// arithmetic past the array: only the masked loads dereference it.
template <typename T>
inline const T* displaced(const T* p, int64_t elements) {
  return reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(p) + elements * static_cast<int64_t>(sizeof(T)));
}

// y[j] = shift + sum over valid taps of w[kh*K + kw] * x[j + (kh-pad)*W + kw-pad]
// for the whole plane (x and y compact H x W planes).
template <int K, typename in_t, typename out_t>
inline void conv_plane_direct(const DirectPlan& p, const in_t* x, const float* w, float shift, out_t* y) {
  __m512 wv[K * K];
  for (int t = 0; t < K * K; ++t) wv[t] = _mm512_set1_ps(w[t]);
  const __m512 sv = _mm512_set1_ps(shift);
  constexpr int pad = K / 2;
  for (int64_t v = 0; v < p.vectors; ++v) {
    const int64_t j = 16 * v;
    const __mmask16* m = p.masks.data() + v * K * K;
    // One accumulator per window row: K short FMA chains instead of one of
    // K*K (the FMA latency, not the loads, bounds a single chain).
    __m512 acc[K];
#pragma GCC unroll 7
    for (int kh = 0; kh < K; ++kh) {
      acc[kh] = kh == 0 ? sv : _mm512_setzero_ps();
#pragma GCC unroll 7
      for (int kw = 0; kw < K; ++kw) {
        const in_t* src = displaced(x, j + (kh - pad) * p.W + (kw - pad));
        acc[kh] = _mm512_fmadd_ps(load_row16(src, m[kh * K + kw]), wv[kh * K + kw], acc[kh]);
      }
    }
#pragma GCC unroll 7
    for (int kh = 1; kh < K; ++kh) acc[0] = _mm512_add_ps(acc[0], acc[kh]);
    store_row16(y + j, first_lanes(std::min<int64_t>(16, p.plane - j)), acc[0]);
  }
}

// ------------------------------------------------------------ windowed ----
// Kernels for `DirectPlan::windowed` geometries. P planes that share their
// weights (one channel, several batch entries) are processed together, so each
// (vector, tap) lane mask and index vector is loaded once for all P. Every
// input vector is loaded once (masked to the plane: lanes before or past it
// read as zero) and slides through three registers: prev, cur, next.

// Whether tap t of a K x K kernel reads behind the output (a negative offset).
template <int K>
constexpr bool tap_reads_behind(int t) {
  return t / K < K / 2 || (t / K == K / 2 && t % K < K / 2);
}

// Tap t's 16-lane window of the input around output vector `cur`.
template <int K>
inline __m512 tap_window(int t, const __m512i& index, __m512 prev, __m512 cur, __m512 next) {
  if (t == K * K / 2) return cur;
  return tap_reads_behind<K>(t) ? _mm512_permutex2var_ps(prev, index, cur) : _mm512_permutex2var_ps(cur, index, next);
}

// Input vector v of a plane (zero outside it).
template <typename in_t>
inline __m512 plane_vector(const DirectPlan& p, const in_t* x, int64_t v) {
  if (v < 0 || v >= p.vectors) return _mm512_setzero_ps();
  return load_row16(x + 16 * v, first_lanes(std::min<int64_t>(16, p.plane - 16 * v)));
}

// y_q = shift + conv(x_q, w) for planes q < P, x_q = x + q * x_stride,
// y_q = y + q * y_stride: conv_plane_direct for P planes at once.
template <int K, int P, typename in_t, typename out_t>
inline void conv_planes_windowed(const DirectPlan& p, const in_t* x, int64_t x_stride, const float* w, float shift,
                                 out_t* y, int64_t y_stride) {
  __m512 wv[K * K];
  for (int t = 0; t < K * K; ++t) wv[t] = _mm512_set1_ps(w[t]);
  __m512 prev[P], cur[P], next[P], acc[P];
  for (int q = 0; q < P; ++q) {
    prev[q] = _mm512_setzero_ps();
    cur[q] = plane_vector(p, x + q * x_stride, 0);
  }
  for (int64_t v = 0; v < p.vectors; ++v) {
    const __mmask16* m = p.masks.data() + v * K * K;
    for (int q = 0; q < P; ++q) {
      next[q] = plane_vector(p, x + q * x_stride, v + 1);
      acc[q] = _mm512_set1_ps(shift);
    }
#pragma GCC unroll 49
    for (int t = 0; t < K * K; ++t) {
      const __mmask16 mk = m[t];
      const __m512i index = _mm512_loadu_si512(p.window_index.data() + 16 * t);
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q)
        acc[q] = _mm512_mask3_fmadd_ps(tap_window<K>(t, index, prev[q], cur[q], next[q]), wv[t], acc[q], mk);
    }
    const __mmask16 out = first_lanes(std::min<int64_t>(16, p.plane - 16 * v));
    for (int q = 0; q < P; ++q) {
      store_row16(y + q * y_stride + 16 * v, out, acc[q]);
      prev[q] = cur[q];
      cur[q] = next[q];
    }
  }
}

// The weight_grad_direct sums for P planes (dz compact and consecutive, x
// planes x_stride apart), added into the float lanes of acc[K*K].
template <int K, int P, typename in_t>
inline void weight_grad_windowed(const DirectPlan& p, const float* dz, const in_t* x, int64_t x_stride,
                                 __m512* acc) {
  __m512 prev[P], cur[P], next[P], d[P];
  for (int q = 0; q < P; ++q) {
    prev[q] = _mm512_setzero_ps();
    cur[q] = plane_vector(p, x + q * x_stride, 0);
  }
  for (int64_t v = 0; v < p.vectors; ++v) {
    const __mmask16* m = p.masks.data() + v * K * K;
    for (int q = 0; q < P; ++q) {
      next[q] = plane_vector(p, x + q * x_stride, v + 1);
      d[q] = plane_vector(p, dz + q * p.plane, v);
    }
#pragma GCC unroll 49
    for (int t = 0; t < K * K; ++t) {
      const __mmask16 mk = m[t];
      const __m512i index = _mm512_loadu_si512(p.window_index.data() + 16 * t);
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q)
        acc[t] = _mm512_mask3_fmadd_ps(tap_window<K>(t, index, prev[q], cur[q], next[q]), d[q], acc[t], mk);
    }
    for (int q = 0; q < P; ++q) {
      prev[q] = cur[q];
      cur[q] = next[q];
    }
  }
}

// Planes per windowed call: the P-plane kernel keeps 4 * P + K*K + 2 vectors
// live; 4 fits AVX-512's 32 registers for K = 3.
constexpr int64_t kWindowPlanes = 4;

// conv_plane_direct of `planes` planes of one channel (x planes x_stride
// apart, y planes y_stride apart), through the windowed kernel where the
// geometry allows it.
template <int K, typename in_t, typename out_t>
inline void conv_planes_direct(const DirectPlan& p, const in_t* x, int64_t x_stride, int64_t planes, const float* w,
                               float shift, out_t* y, int64_t y_stride) {
  int64_t n = 0;
  if (p.windowed) {
    for (; n + kWindowPlanes <= planes; n += kWindowPlanes)
      conv_planes_windowed<K, kWindowPlanes>(p, x + n * x_stride, x_stride, w, shift, y + n * y_stride, y_stride);
    for (; n < planes; ++n) conv_planes_windowed<K, 1>(p, x + n * x_stride, x_stride, w, shift, y + n * y_stride, y_stride);
    return;
  }
  for (; n < planes; ++n) conv_plane_direct<K>(p, x + n * x_stride, w, shift, y + n * y_stride);
}

// acc[kh*K + kw] += dz[j] * x[j + (kh-pad)*W + kw-pad] over the valid taps of
// one plane, lane-wise: masked loads, one per tap.
template <int K, typename in_t>
inline void weight_grad_plane_masked(const DirectPlan& p, const float* dz, const in_t* x, __m512* acc) {
  constexpr int pad = K / 2;
  for (int64_t v = 0; v < p.vectors; ++v) {
    const int64_t j = 16 * v;
    const __mmask16* m = p.masks.data() + v * K * K;
    const __m512 dv = _mm512_maskz_loadu_ps(first_lanes(std::min<int64_t>(16, p.plane - j)), dz + j);
#pragma GCC unroll 7
    for (int kh = 0; kh < K; ++kh) {
#pragma GCC unroll 7
      for (int kw = 0; kw < K; ++kw) {
        const in_t* src = displaced(x, j + (kh - pad) * p.W + (kw - pad));
        acc[kh * K + kw] = _mm512_fmadd_ps(load_row16(src, m[kh * K + kw]), dv, acc[kh * K + kw]);
      }
    }
  }
}

// gw[kh*K + kw] += sum over `planes` planes n of sum_j dz_n[j] * x_n[j + (kh-pad)*W + kw-pad]
// (valid taps only): the conv-weight gradient of stride-1 planes, in place.
// dz planes are compact and consecutive; x planes are `x_stride` elements
// apart. Lane sums are flushed to double about every kDotBlock elements per
// lane, as the flat kernels do, so float32 gradients stay accurate.
template <int K, typename in_t>
inline void weight_grad_direct(const DirectPlan& p, const float* dz, const in_t* x, int64_t x_stride, int64_t planes,
                               double* gw) {
  // A multiple of the windowed block, so blocks never straddle a flush.
  const int64_t flush = kWindowPlanes * std::max<int64_t>(1, kDotBlock * 16 / (kWindowPlanes * p.plane));
  __m512 acc[K * K];
  for (int64_t n0 = 0; n0 < planes; n0 += flush) {
    for (int t = 0; t < K * K; ++t) acc[t] = _mm512_setzero_ps();
    const int64_t n1 = std::min(planes, n0 + flush);
    int64_t n = n0;
    if (p.windowed) {
      for (; n + kWindowPlanes <= n1; n += kWindowPlanes)
        weight_grad_windowed<K, kWindowPlanes>(p, dz + n * p.plane, x + n * x_stride, x_stride, acc);
      for (; n < n1; ++n) weight_grad_windowed<K, 1>(p, dz + n * p.plane, x + n * x_stride, x_stride, acc);
    }
    for (; n < n1; ++n) weight_grad_plane_masked<K>(p, dz + n * p.plane, x + n * x_stride, acc);
    for (int t = 0; t < K * K; ++t) {
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, acc[t]);
      double sum = 0;
      for (int l = 0; l < 16; ++l) sum += static_cast<double>(lanes[l]);
      gw[t] += sum;
    }
  }
}

using DirectPlanOrNone = DirectPlan;
// The plan of a stride-1 geometry (an empty one otherwise: never used).
inline const DirectPlan& make_direct_plan(const ConvGeometry& g) {
  return g.stride == 1 ? direct_plan_for(g.H, g.W, g.K) : direct_plan_for(0, 1, g.K);
}
#else
struct DirectPlanOrNone {};
inline DirectPlanOrNone make_direct_plan(const ConvGeometry&) { return {}; }
#endif  // SF_CPU_HAS_AVX512
