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
#pragma once

#include "cpu/avx512/target.h"

#include <cstddef>
#include <memory>
#include <vector>

#include "cpu/avx512/row16.h"
#include "cpu/isa_namespace.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// floor(off / 16): the input vector, relative to the output vector, that a
// tap offset starts in.
constexpr int64_t vector_of_offset(int64_t off) { return off >= 0 ? off / 16 : -((15 - off) / 16); }

// The input vector pair (v + q, v + q + 1) that tap t of a K x K kernel reads
// for output vector v in a span-Q windowed kernel: rows above the centre read
// behind (q = -Q), rows below ahead (q = Q - 1), the centre row's left taps
// straddle v - 1 and v, its right taps v and v + 1. A compile-time constant,
// so the kernels pick their registers statically; WindowedPlan checks that a
// geometry's offsets agree with it.
constexpr int expected_window_q(int K, int Q, int t) {
  return t / K < K / 2 ? -Q : t / K > K / 2 ? Q - 1 : (t % K < K / 2 ? -1 : 0);
}

// Lane masks of every (output vector, tap) of one plane geometry and, where
// the geometry allows it, the vpermt2ps index vector of each tap (see
// "windowed" below): tap (kh, kw) reads input offset off = (kh - pad) * W +
// (kw - pad) from the output, i.e. lanes r .. r + 15 of input vectors
// v + q and v + q + 1, with q = floor(off / 16) and r = off - 16 q.
struct WindowedPlan {
  int64_t H, W, K, pad, plane, vectors;
  std::vector<__mmask16> masks;  // [v * K * K + kh * K + kw]
  // 0: not windowed; Q: every tap's q is expected_window_q(K, Q, tap), so the
  // windowed kernels of span Q keep input vectors v - Q .. v + Q in registers.
  int window_span = 0;
  std::vector<int32_t> window_index;  // [(kh * K + kw) * 16 + lane]

  WindowedPlan(int64_t H_, int64_t W_, int64_t K_)
      : H(H_), W(W_), K(K_), pad(conv_pad(K_)), plane(H_ * W_), vectors((H_ * W_ + 15) / 16) {
    for (int span : {1, 2}) {
      if (span == 2 && K != 3) break;  // span 2 exists for 3x3 only (planes 18..30 wide)
      if (!window_fits(span)) continue;
      window_span = span;
      window_index.resize(K * K * 16);
      for (int64_t t = 0; t < K * K; ++t) {
        const int64_t off = tap_offset(t), q = expected_window_q(static_cast<int>(K), span, static_cast<int>(t));
        for (int64_t l = 0; l < 16; ++l) window_index[t * 16 + l] = static_cast<int32_t>(l + off - 16 * q);
      }
      break;
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

  int64_t tap_offset(int64_t t) const { return (t / K - pad) * W + (t % K - pad); }

  // Whether every tap's input vector pair is the one span-Q kernels assume.
  bool window_fits(int span) const {
    for (int64_t t = 0; t < K * K; ++t) {
      const int64_t off = tap_offset(t);
      const int64_t q = vector_of_offset(off);
      if (t != K * K / 2 && q != expected_window_q(static_cast<int>(K), span, static_cast<int>(t))) return false;
    }
    return true;
  }
};

// Bytes a plan holds (masks: K*K/8 per plane pixel).
inline size_t plan_bytes(const WindowedPlan& p) {
  return sizeof(p) + p.masks.capacity() * sizeof(__mmask16) + p.window_index.capacity() * sizeof(int32_t);
}

// Each thread keeps recent plans up to this many bytes; a plan larger than a
// quarter of it (a plane of about 700K pixels at K = 7, 3M at K = 3) is never
// kept, and is freed when its caller returns.
constexpr size_t kPlanCacheBytes = size_t(16) << 20;

using PlanRef = std::shared_ptr<const WindowedPlan>;

// The plan of an H x W x K geometry, kept per calling thread: a model has a
// handful of distinct geometries, and building the masks of a 56x56 plane
// costs about as much as convolving a few of its planes. Oldest plans are
// dropped first when the cache is full.
inline PlanRef windowed_plan_for(int64_t H, int64_t W, int64_t K) {
  struct Cache {
    std::vector<PlanRef> plans;
    size_t bytes = 0;
  };
  thread_local Cache cache;
  for (const PlanRef& p : cache.plans)
    if (p->H == H && p->W == W && p->K == K) return p;
  PlanRef plan = std::make_shared<const WindowedPlan>(H, W, K);
  const size_t bytes = plan_bytes(*plan);
  if (bytes > kPlanCacheBytes / 4) return plan;
  while (cache.bytes + bytes > kPlanCacheBytes) {
    cache.bytes -= plan_bytes(*cache.plans.front());
    cache.plans.erase(cache.plans.begin());
  }
  cache.plans.push_back(plan);
  cache.bytes += bytes;
  return plan;
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
inline void conv_plane_direct(const WindowedPlan& p, const in_t* x, const float* w, float shift, out_t* y) {
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
// Kernels for geometries with WindowedPlan::window_span = Q > 0. P planes that
// share their weights (one channel, several batch entries) are processed
// together, so each (vector, tap) lane mask and index vector is loaded once
// for all P. Every input vector is loaded once (masked to the plane: lanes
// before or past it read as zero) and slides through 2Q + 1 registers
// (vectors v - Q .. v + Q); each tap's window is one two-register shuffle of
// them (vpermt2ps, or valignd where W is a compile-time constant).
// Lanes whose tap falls outside the image are dropped by a masked FMA (a
// masked-off lane keeps its accumulator: a neighbouring column's Inf cannot
// leak in, as it would through a multiplication by zero).

// Planes per windowed call: P * (2Q + 2) + K*K + 2 vectors stay live, which
// fits AVX-512's 32 registers for K = 3 with P = 4 (Q = 1) or 2 (Q = 2).
template <int Q>
constexpr int kWindowPlanes = Q == 1 ? 4 : 2;

// Input vector v of a plane (zero outside it).
template <typename in_t>
inline __m512 plane_vector(const WindowedPlan& p, const in_t* x, int64_t v) {
  if (v < 0 || v >= p.vectors) return _mm512_setzero_ps();
  return load_row16(x + 16 * v, first_lanes(std::min<int64_t>(16, p.plane - 16 * v)));
}

// The input vectors v - Q .. v + Q of one plane, in registers.
template <int Q>
struct WindowRing {
  __m512 r[2 * Q + 1];

  // Before output vector 0: vectors -Q .. Q - 1 (the last one is loaded by advance()).
  template <typename in_t>
  void start(const WindowedPlan& p, const in_t* x) {
    for (int i = 0; i < 2 * Q; ++i) r[i] = plane_vector(p, x, i - Q);
  }
  // Input vector v + Q, v being output vector `out` (PlanVector or FixedVector).
  template <typename OutVector, typename in_t>
  void load_ahead(const OutVector& out, const in_t* x) {
    r[2 * Q] = out.template input<Q>(x);
  }
  void advance() {
    for (int i = 0; i < 2 * Q; ++i) r[i] = r[i + 1];
  }
};

// One output vector of the windowed kernels: its input vectors, the lane
// mask of each tap, and the lanes it stores. PlanVector reads them from the
// plan at run time. FixedVector, for a plane whose H and W the window policy
// fixes, has them as constants: the vector loop is unrolled, a tap that no
// lane of the vector uses is dropped (the bottom-right corner alone in the
// last vector of a 7x7 plane uses 4 of the 9 taps), a tap that all 16 lanes
// use takes a plain FMA, and no mask is loaded. Tap use: 0 none, 1 some
// lanes (masked FMA), 2 all lanes. (A vector that runs past the plane keeps
// its masks: the weight gradient sums every lane, and a lane past the plane
// may see an in-plane Inf through its window.)
// (The plan's values are copied in: behind a reference they would be
// reloaded after every vector store, which may alias anything.)
struct PlanVector {
  const __mmask16* masks;  // this vector's, [tap]
  int64_t v, vectors, plane;

  template <int K, int T>
  static constexpr int use() {
    return 1;
  }
  template <int K, int T>
  __mmask16 tap_mask() const {
    return masks[T];
  }
  int64_t index() const { return v; }
  __mmask16 stored() const { return first_lanes(std::min<int64_t>(16, plane - 16 * v)); }
  template <int D, typename in_t>
  __m512 input(const in_t* x) const {
    const int64_t u = v + D;
    if (u < 0 || u >= vectors) return _mm512_setzero_ps();
    return load_row16(x + 16 * u, first_lanes(std::min<int64_t>(16, plane - 16 * u)));
  }
};

// The lanes of vector v of an H x W plane whose tap T is inside the image
// (WindowedPlan's masks, at compile time).
constexpr __mmask16 fixed_tap_mask(int H, int W, int K, int v, int T) {
  unsigned bits = 0;
  for (int l = 0; l < 16 && 16 * v + l < H * W; ++l) {
    const int j = 16 * v + l, ih = j / W + T / K - K / 2, iw = j % W + T % K - K / 2;
    if (ih >= 0 && ih < H && iw >= 0 && iw < W) bits |= 1u << l;
  }
  return static_cast<__mmask16>(bits);
}

template <int H, int W, int V>
struct FixedVector {
  static constexpr int kPlane = H * W;
  static constexpr int kVectors = (kPlane + 15) / 16;

  template <int K, int T>
  static constexpr int use() {
    constexpr __mmask16 m = fixed_tap_mask(H, W, K, V, T);
    return m == 0 ? 0 : m == 0xFFFF ? 2 : 1;
  }
  template <int K, int T>
  static constexpr __mmask16 tap_mask() {
    return fixed_tap_mask(H, W, K, V, T);
  }
  static constexpr int64_t index() { return V; }
  static constexpr __mmask16 stored() { return first_lanes(std::min(16, kPlane - 16 * V)); }
  template <int D, typename in_t>
  static __m512 input(const in_t* x) {
    constexpr int u = V + D;
    if constexpr (u < 0 || u >= kVectors) {
      return _mm512_setzero_ps();
    } else {
      return load_row16(x + 16 * u, first_lanes(std::min(16, kPlane - 16 * u)));
    }
  }
};

// acc + window * w over the lanes of `out` whose tap T is inside the image.
template <int K, int T, typename OutVector>
inline __m512 tap_fma(const OutVector& out, __m512 window, __m512 w, __m512 acc) {
  if constexpr (OutVector::template use<K, T>() == 2) {
    return _mm512_fmadd_ps(window, w, acc);
  } else {
    return _mm512_mask3_fmadd_ps(window, w, acc, out.template tap_mask<K, T>());
  }
}

// How tap T's 16-lane window around the current output vector is cut from a
// WindowRing. `prepare` gives what all P planes' windows of a tap share.
//
// Any width the plan accepts: vpermt2ps with the plan's index vectors.
template <int Q_>
struct PermuteWindows {
  static constexpr int Q = Q_;
  static constexpr int kFixedH = 0, kFixedW = 0;  // any plane
  const int32_t* index;  // WindowedPlan::window_index

  template <int K, int T>
  __m512i prepare() const {
    if constexpr (T == K * K / 2) return _mm512_setzero_si512();  // the centre tap needs no permute
    return _mm512_loadu_si512(index + 16 * T);
  }
  template <int K, int T>
  __m512 window(const WindowRing<Q>& in, const __m512i& ix) const {
    if constexpr (T == K * K / 2) return in.r[Q];
    constexpr int q = expected_window_q(K, Q, T);
    return _mm512_permutex2var_ps(in.r[Q + q], ix, in.r[Q + q + 1]);
  }
};

// A width known at compile time: valignd with an immediate shift, which
// (unlike vpermt2ps) neither loads an index nor overwrites a source. With the
// height known too (H > 0), the kernels take the plane's vectors and lane
// masks as compile-time constants (FixedVector).
template <int Q_, int W, int H = 0>
struct AlignWindows {
  static constexpr int Q = Q_;
  static constexpr int kFixedH = H, kFixedW = W;
  struct Nothing {};

  template <int K, int T>
  Nothing prepare() const {
    return {};
  }
  template <int K, int T>
  __m512 window(const WindowRing<Q>& in, Nothing) const {
    constexpr int off = (T / K - K / 2) * W + (T % K - K / 2);
    constexpr int q = static_cast<int>(vector_of_offset(off));
    constexpr int r = off - 16 * q;
    static_assert(q >= -Q && (r == 0 ? q <= Q : q < Q), "tap outside the window span");
    if constexpr (r == 0) return in.r[Q + q];
    // (maskz form with all lanes: GCC 12's unmasked one warns in its own header.)
    return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(0xFFFF, _mm512_castps_si512(in.r[Q + q + 1]),
                                                         _mm512_castps_si512(in.r[Q + q]), r));
  }
};

// Calls f(std::integral_constant<int, I>()) for I = 0 .. N-1, so each tap's
// (or fixed vector's) code is resolved at compile time.
template <typename F, int... I>
inline void for_each_index_of(const F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>()), ...);
}
template <int N, typename F>
inline void for_each_index(const F& f) {
  for_each_index_of(f, std::make_integer_sequence<int, N>());
}

// Calls step(out) for each output vector of the plane: PlanVector in a loop,
// or, where the window policy fixes the plane, FixedVector<H, W, v> unrolled.
template <typename Windows, typename Step>
__attribute__((always_inline)) inline void for_each_output_vector(const WindowedPlan& p, const Step& step) {
  constexpr int H = Windows::kFixedH, W = Windows::kFixedW;
  if constexpr (H > 0) {
    for_each_index<(H * W + 15) / 16>([&](auto v) { step(FixedVector<H, W, decltype(v)::value>()); });
  } else {
    const __mmask16* masks = p.masks.data();
    const int64_t vectors = p.vectors, plane = p.plane, taps = p.K * p.K;
    for (int64_t v = 0; v < vectors; ++v) step(PlanVector{masks + v * taps, v, vectors, plane});
  }
}

// Calls body(windows) with the window policy for the plan and returns true,
// or returns false where the plan is not windowed. The network's 3x3 widths
// (7, 14, 28 at ShuffleNet's 224 input) get the compile-time policy, the 7x7
// plane with its height fixed too (its 4 vectors unrolled, its masks
// constants); other heights of width 7 take the vpermt2ps policy.
template <int K, typename Body>
inline bool with_windows(const WindowedPlan& p, const Body& body) {
  if constexpr (K == 3) {
    if (p.window_span == 1 && p.W == 7 && p.H == 7) return body(AlignWindows<1, 7, 7>()), true;
    if (p.window_span == 1 && p.W == 14) return body(AlignWindows<1, 14>()), true;
    if (p.window_span == 2 && p.W == 28) return body(AlignWindows<2, 28>()), true;
    if (p.window_span == 2) return body(PermuteWindows<2>{p.window_index.data()}), true;
  }
  if (p.window_span == 1) return body(PermuteWindows<1>{p.window_index.data()}), true;
  return false;
}

// Where the P planes of a windowed block are: `base + n * stride` (one
// channel, several batch entries), or a list of pointers (several channels).
template <typename T>
struct StridedPlanes {
  T* base;
  int64_t stride;
  T* operator[](int n) const { return base + n * stride; }
};
template <typename T>
struct PlaneList {
  T* const* planes;
  T* operator[](int n) const { return planes[n]; }
};

// Their taps and shifts: shared by all P planes (held in registers), or one
// set per plane (broadcast from memory at each use).
struct SharedTaps {
  const float* w;
  float shift;
};
struct PlaneTaps {
  const float* const* w;
  const float* shift;
};

// y[n] = shift + conv(x[n], w) for planes n < P: conv_plane_direct for P
// planes at once. (x, taps and y by value: as locals they stay in registers;
// behind a reference they would be reloaded after every vector store, which
// may alias anything.)
template <int K, int P, typename Windows, typename XPlanes, typename YPlanes, typename Taps>
inline void conv_planes_windowed(const WindowedPlan& p, const Windows& win, const XPlanes x, const Taps taps,
                                 const YPlanes y) {
  constexpr bool kShared = std::is_same<Taps, SharedTaps>::value;
  __m512 wv[K * K];
  if constexpr (kShared)
    for (int t = 0; t < K * K; ++t) wv[t] = _mm512_set1_ps(taps.w[t]);
  WindowRing<Windows::Q> in[P];
  __m512 acc[P];
  for (int n = 0; n < P; ++n) in[n].start(p, x[n]);
  for_each_output_vector<Windows>(p, [&](const auto& out) __attribute__((always_inline)) {
    for (int n = 0; n < P; ++n) {
      in[n].load_ahead(out, x[n]);
      if constexpr (kShared) {
        acc[n] = _mm512_set1_ps(taps.shift);
      } else {
        acc[n] = _mm512_set1_ps(taps.shift[n]);
      }
    }
    using Out = std::decay_t<decltype(out)>;
    for_each_index<K * K>([&](auto tap) {
      constexpr int t = decltype(tap)::value;
      if constexpr (Out::template use<K, t>() != 0) {
        const auto shared = win.template prepare<K, t>();
#pragma GCC unroll 8
        for (int n = 0; n < P; ++n) {
          __m512 wt;
          if constexpr (kShared) {
            wt = wv[t];
          } else {
            wt = _mm512_set1_ps(taps.w[n][t]);
          }
          acc[n] = tap_fma<K, t>(out, win.template window<K, t>(in[n], shared), wt, acc[n]);
        }
      }
    });
    const int64_t v = out.index();
    for (int n = 0; n < P; ++n) {
      store_row16(y[n] + 16 * v, out.stored(), acc[n]);
      in[n].advance();
    }
  });
}

// The weight_grad_direct sums for P planes (dz compact and consecutive, x
// planes x_stride apart), added into the float lanes of acc[K*K].
template <int K, int P, typename Windows, typename in_t>
inline void weight_grad_windowed(const WindowedPlan& p, const Windows& win, const float* dz, const in_t* x,
                                 int64_t x_stride, __m512* acc) {
  WindowRing<Windows::Q> in[P];
  __m512 d[P];
  for (int n = 0; n < P; ++n) in[n].start(p, x + n * x_stride);
  for_each_output_vector<Windows>(p, [&](const auto& out) __attribute__((always_inline)) {
    for (int n = 0; n < P; ++n) {
      in[n].load_ahead(out, x + n * x_stride);
      d[n] = out.template input<0>(dz + n * p.plane);
    }
    using Out = std::decay_t<decltype(out)>;
    for_each_index<K * K>([&](auto tap) {
      constexpr int t = decltype(tap)::value;
      if constexpr (Out::template use<K, t>() != 0) {
        const auto shared = win.template prepare<K, t>();
#pragma GCC unroll 8
        for (int n = 0; n < P; ++n) acc[t] = tap_fma<K, t>(out, win.template window<K, t>(in[n], shared), d[n], acc[t]);
      }
    });
    for (int n = 0; n < P; ++n) in[n].advance();
  });
}

// Calls body(n0, planes_tag) over `planes` planes in the blocks a windowed
// kernel of span Q takes: full blocks of kWindowPlanes<Q>, then single planes
// (planes_tag: std::integral_constant holding the block's plane count).
template <int Q, typename Body>
inline void for_window_blocks(int64_t planes, const Body& body) {
  constexpr int P = kWindowPlanes<Q>;
  int64_t n = 0;
  for (; n + P <= planes; n += P) body(n, std::integral_constant<int, P>());
  for (; n < planes; ++n) body(n, std::integral_constant<int, 1>());
}

// conv_plane_direct of `planes` planes of one channel (x planes x_stride
// apart, y planes y_stride apart), through the windowed kernels where the
// geometry allows it.
template <int K, typename in_t, typename out_t>
inline void conv_planes_direct(const WindowedPlan& p, const in_t* x, int64_t x_stride, int64_t planes, const float* w,
                               float shift, out_t* y, int64_t y_stride) {
  const bool windowed = with_windows<K>(p, [&](const auto& win) {
    using Windows = std::decay_t<decltype(win)>;
    for_window_blocks<Windows::Q>(planes, [&](int64_t n0, auto p_tag) {
      conv_planes_windowed<K, decltype(p_tag)::value>(p, win, StridedPlanes<const in_t>{x + n0 * x_stride, x_stride},
                                                      SharedTaps{w, shift},
                                                      StridedPlanes<out_t>{y + n0 * y_stride, y_stride});
    });
  });
  if (windowed) return;
  for (int64_t n = 0; n < planes; ++n) conv_plane_direct<K>(p, x + n * x_stride, w, shift, y + n * y_stride);
}

// conv_plane_direct of `planes` planes with their own taps: plane n reads
// x[n], writes y[n], with taps w[n] and shift[n] (several channels of one
// batch entry; at batch 1 the only way to fill a windowed block).
template <int K, typename in_t, typename out_t>
inline void conv_channels_direct(const WindowedPlan& p, const in_t* const* x, const float* const* w,
                                 const float* shift, out_t* const* y, int64_t planes) {
  const bool windowed = with_windows<K>(p, [&](const auto& win) {
    using Windows = std::decay_t<decltype(win)>;
    for_window_blocks<Windows::Q>(planes, [&](int64_t n0, auto p_tag) {
      conv_planes_windowed<K, decltype(p_tag)::value>(p, win, PlaneList<const in_t>{x + n0},
                                                      PlaneTaps{w + n0, shift + n0}, PlaneList<out_t>{y + n0});
    });
  });
  if (windowed) return;
  for (int64_t n = 0; n < planes; ++n) conv_plane_direct<K>(p, x[n], w[n], shift[n], y[n]);
}

// acc[kh*K + kw] += dz[j] * x[j + (kh-pad)*W + kw-pad] over the valid taps of
// one plane, lane-wise: masked loads, one per tap.
template <int K, typename in_t>
inline void weight_grad_plane_masked(const WindowedPlan& p, const float* dz, const in_t* x, __m512* acc) {
  constexpr int pad = K / 2;
  for (int64_t v = 0; v < p.vectors; ++v) {
    const int64_t j = 16 * v;
    const __mmask16* m = p.masks.data() + v * K * K;
    const __mmask16 dm = first_lanes(std::min<int64_t>(16, p.plane - j));
    check_masked(dz + j, dm, "weight_grad_plane_masked");
    const __m512 dv = _mm512_maskz_loadu_ps(dm, dz + j);
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
inline void weight_grad_direct(const WindowedPlan& p, const float* dz, const in_t* x, int64_t x_stride, int64_t planes,
                               double* gw) {
  // A multiple of every windowed block, so blocks never straddle a flush.
  constexpr int64_t kBlock = 4;
  static_assert(kBlock % kWindowPlanes<1> == 0 && kBlock % kWindowPlanes<2> == 0, "flush blocks");
  const int64_t flush = kBlock * std::max<int64_t>(1, kDotBlock * 16 / (kBlock * p.plane));
  __m512 acc[K * K];
  for (int64_t n0 = 0; n0 < planes; n0 += flush) {
    for (int t = 0; t < K * K; ++t) acc[t] = _mm512_setzero_ps();
    const int64_t n1 = std::min(planes, n0 + flush);
    const bool windowed = with_windows<K>(p, [&](const auto& win) {
      using Windows = std::decay_t<decltype(win)>;
      for_window_blocks<Windows::Q>(n1 - n0, [&](int64_t n, auto p_tag) {
        weight_grad_windowed<K, decltype(p_tag)::value>(p, win, dz + (n0 + n) * p.plane, x + (n0 + n) * x_stride,
                                                        x_stride, acc);
      });
    });
    if (!windowed)
      for (int64_t n = n0; n < n1; ++n) weight_grad_plane_masked<K>(p, dz + n * p.plane, x + n * x_stride, acc);
    for (int t = 0; t < K * K; ++t) {
      alignas(64) float lanes[16];
      _mm512_store_ps(lanes, acc[t]);
      double sum = 0;
      for (int l = 0; l < 16; ++l) sum += static_cast<double>(lanes[l]);
      gw[t] += sum;
    }
  }
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
