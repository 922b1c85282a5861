// The AVX-512 layers of the inference pipeline (float32): the 1x1 group conv
// as a register-blocked micro-kernel, the depthwise conv and average pool
// through the eval op's kernels (windowed_plane.h, stride2_k3_rows.h), the
// stem conv + max pool by bands of rows. The rest is portable_stages.h.
#pragma once

#include "cpu/avx512/target.h"

#include <algorithm>
#include <cmath>
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

// Pointwise tiles: R output channels x V vectors of 16 pixels of
// accumulators (R * V <= 24, leaving registers for V inputs and a weight),
// reading an input tile packed W vectors wide. Narrow groups take 6 x 4
// (64 pixels, the packed tile cin_g x 256 B); wide ones (cin_g > 96) 12 x 2,
// so that the packed tile (cin_g x 128 B) stays in L1 with the weights.
struct WideTiles {
  static constexpr int kRows = 6, kVectors = 4;
};
struct TallTiles {
  static constexpr int kRows = 12, kVectors = 2;
};
// Planes whose whole vectors hold 48 pixels (7x7: 48 and a tail pixel): 8 x 3
// tiles, every lane a pixel of the plane.
struct ThreeVectorTiles {
  static constexpr int kRows = 8, kVectors = 3;
};
constexpr int64_t kTallTilesFrom = 96;  // cin_g above which TallTiles are used

// Pixels past a plane's last full vector, up to this many, may be computed
// as dot products (pointwise_tail) rather than by a vector of mostly idle
// lanes: where that is cheaper per output channel. A dot product costs a
// vector FMA per 16 input channels plus ~20 instructions (the horizontal sum,
// the scalar epilogue); the vector, an FMA per input channel.
constexpr int64_t kMaxTailPixels = 4;
inline bool tail_pays(int64_t tail, int64_t cin_g) {
  return tail > 0 && tail <= kMaxTailPixels && tail * ((cin_g + 15) / 16 + 20) < cin_g;
}

// What every tile of one pointwise call shares.
struct PointwiseTask {
  const PointwiseLayer& L;
  const float* xt;  // packed input tile
  int64_t cin_g;
  const PointwiseOut& out;
  // The tail pixels' input columns, each cin_g floats zero-padded to whole
  // vectors (tail_pitch floats apart), and where the tail starts.
  const float* xc = nullptr;
  int64_t tail_pitch = 0, tail_p0 = 0, tail = 0;
};

// max(a, b) that returns NaN when either is NaN (vmaxps alone returns b when
// a is NaN).
inline __m512 max_keep_nan(__m512 a, __m512 b) {
  return _mm512_mask_mov_ps(_mm512_max_ps(a, b), _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), a);
}

// Where output channel o (of the layer, after its store map) of `out` starts.
inline float* output_plane(const PointwiseOut& out, int64_t o) {
  return out.y + (out.channel_offset + o) * out.pitch;
}

// Output channels co .. co + R - 1 at the task's tail pixels: each a dot
// product of the channel's weight row (in L1, just read by the tile) with the
// pixel's packed input column, 16 input channels a vector, then the tile's
// epilogue on the sum.
template <int R>
inline void pointwise_tail(const PointwiseTask& t, int64_t co) {
  const PointwiseLayer& L = t.L;
  const PointwiseOut& out = t.out;
  const int64_t cin_g = t.cin_g, vectors = t.tail_pitch / 16;
  const __mmask16 last = first_lanes(cin_g - 16 * (vectors - 1));
  const float* w = L.w + co * cin_g;
  for (int64_t j = 0; j < t.tail; ++j) {
    const float* xc = t.xc + j * t.tail_pitch;
    __m512 acc[R];
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < vectors; ++b) {
      const __mmask16 m = b + 1 < vectors ? first_lanes(16) : last;
      const __m512 xv = _mm512_load_ps(xc + 16 * b);
#pragma GCC unroll 12
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(load_row16(w + r * cin_g + 16 * b, m), xv, acc[r]);
    }
    const int64_t p = t.tail_p0 + j;
    for (int r = 0; r < R; ++r) {
      const int64_t o = L.out_channel(co + r);
      float a = std::fma(_mm512_reduce_add_ps(acc[r]), L.scale[co + r], L.shift[co + r]);
      if (out.residual != nullptr) a += out.residual[o * out.residual_pitch + p];
      if (out.relu) a = relu(a);
      output_plane(out, o)[p] = a;
    }
  }
}

// Output channels co .. co + R - 1 (one group) x pixels p0 .. p0 + 16 V - 1
// of a plane: acc = sum over the group's input channels of w * x, x read from
// the packed tile (xt[ci * 16 W + pixel], zero past the plane), then the
// epilogue (BN scale and shift, residual, ReLU), lanes past the plane masked
// off; the last tile of a plane with tail pixels computes those too.
template <int R, int V, int W>
inline void pointwise_tile(const PointwiseTask& t, int64_t co, int64_t p0, const __mmask16* m, bool tail) {
  const PointwiseLayer& L = t.L;
  const PointwiseOut& out = t.out;
  const int64_t cin_g = t.cin_g;
  const float* w = L.w + co * cin_g;
  // The tile's output lines are fetched for writing now, so that the
  // epilogue's stores find them in L1 instead of each waiting for its line
  // (the output buffers were last touched a layer or more ago). A hint: it
  // never faults, also for the lanes past a plane.
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    const float* y = output_plane(out, L.out_channel(co + r)) + p0;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) __builtin_prefetch(y + 16 * v, /*rw=*/1, /*locality=*/3);
  }
  __m512 acc[R][V];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t ci = 0; ci < cin_g; ++ci) {
    const float* xr = t.xt + ci * 16 * W;
    __m512 xv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) xv[v] = _mm512_load_ps(xr + 16 * v);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 wv = _mm512_set1_ps(w[r * cin_g + ci]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    const int64_t o = L.out_channel(co + r);
    const __m512 scale = _mm512_set1_ps(L.scale[co + r]), shift = _mm512_set1_ps(L.shift[co + r]);
    float* y = output_plane(out, o) + p0;
    const float* res = out.residual != nullptr ? out.residual + o * out.residual_pitch + p0 : nullptr;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      __m512 a = _mm512_fmadd_ps(acc[r][v], scale, shift);
      if (res != nullptr) a = _mm512_add_ps(a, load_row16(res + 16 * v, m[v]));
      if (out.relu) a = _mm512_max_ps(zero, a);  // vmaxps returns its second operand for NaN
      store_row16(y + 16 * v, m[v], a);
    }
  }
  if (tail) pointwise_tail<R>(t, co);
}

constexpr int kStemChannels = 16;  // conv output channels computed together

// Stem: output channels co .. co + R - 1 of conv row oh, after bias and ReLU,
// into rows[r * pitch + ow]. Column handling as conv_plane_s2_k3
// (stride2_k3_rows.h): per window row, the even and odd input columns of a
// 16-pixel chunk split by vpermt2ps, the column left of it moved in by valignd;
// columns outside the image load as zeros.
// R <= kStemChannels; the loops over r unroll fully, so that acc stays in
// registers (a partly unrolled loop indexes acc on the stack).
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
#pragma GCC unroll 16
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
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          acc[r] = _mm512_fmadd_ps(odd_left, _mm512_set1_ps(w[r * taps + t]), acc[r]);
          acc[r] = _mm512_fmadd_ps(even, _mm512_set1_ps(w[r * taps + t + 1]), acc[r]);
          acc[r] = _mm512_fmadd_ps(odd, _mm512_set1_ps(w[r * taps + t + 2]), acc[r]);
        }
      }
    }
#pragma GCC unroll 16
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

// Output channels [g0, g1) of one group at one pixel tile (and the tail
// pixels): full tiles of Tiles::kRows channels, then one of the rest.
template <typename Tiles, int V, int R = Tiles::kRows>
inline void pointwise_rows(const PointwiseTask& t, int64_t g0, int64_t g1, int64_t p0, const __mmask16* m,
                           bool tail) {
  constexpr int W = Tiles::kVectors;
  if constexpr (R == Tiles::kRows) {
    for (; g0 + R <= g1; g0 += R) pointwise_tile<R, V, W>(t, g0, p0, m, tail);
  }
  if (g1 - g0 == R) {
    pointwise_tile<R, V, W>(t, g0, p0, m, tail);
  } else if constexpr (R > 1) {
    pointwise_rows<Tiles, V, R - 1>(t, g0, g1, p0, m, tail);
  }
}

// Output channels [c0, c1) of a 1x1 group conv of one image with tiles of one
// shape over the first `pixels - tail` pixels, the last `tail` by pointwise_tail.
template <typename Tiles>
inline void pointwise_with(const PointwiseLayer& L, const float* x, int64_t x_pitch, int64_t pixels, int64_t tail,
                           const PointwiseOut& out, int64_t c0, int64_t c1) {
  constexpr int kV = Tiles::kVectors;
  constexpr int64_t tile = 16 * kV;
  const int64_t cin_g = L.cin_per_group(), cout_g = L.cout_per_group();
  const int64_t tiled = pixels - tail, tail_pitch = (cin_g + 15) / 16 * 16;
  float* xt = aligned_thread_scratch(cin_g * tile + tail * tail_pitch);
  float* xc = xt + cin_g * tile;
  const PointwiseTask task{L, xt, cin_g, out, xc, tail_pitch, tiled, tail};
  for (int64_t g0 = c0; g0 < c1;) {
    const int64_t group = g0 / cout_g, g1 = std::min(c1, (group + 1) * cout_g);
    const float* xg = x + group * cin_g * x_pitch;
    for (int64_t j = 0; j < tail; ++j) {
      float* col = xc + j * tail_pitch;
      for (int64_t ci = 0; ci < cin_g; ++ci) col[ci] = xg[ci * x_pitch + tiled + j];
      for (int64_t ci = cin_g; ci < tail_pitch; ++ci) col[ci] = 0.0f;
    }
    for (int64_t p0 = 0; p0 < tiled; p0 += tile) {
      __mmask16 m[kV];
      for (int v = 0; v < kV; ++v) m[v] = first_lanes(std::clamp<int64_t>(tiled - p0 - 16 * v, 0, 16));
      // The group's input tile, packed: rows of a plane are `plane` floats
      // apart (a new page every row or two), the packed tile is contiguous
      // and stays in L1 while every output channel of the group reads it.
      for (int64_t ci = 0; ci < cin_g; ++ci)
        for (int v = 0; v < kV; ++v)
          _mm512_store_ps(xt + ci * tile + 16 * v, load_row16(xg + ci * x_pitch + p0 + 16 * v, m[v]));
      // The last tile of a plane computes only the vectors it has (a 14x14
      // plane is 12.25 vectors: 3 full tiles and one of a single vector).
      const int64_t vectors = (std::min<int64_t>(tile, tiled - p0) + 15) / 16;
      const bool last = tail > 0 && p0 + tile >= tiled;
      if (vectors == kV) {
        pointwise_rows<Tiles, kV>(task, g0, g1, p0, m, last);
      } else if constexpr (kV == 4) {
        if (vectors == 3) pointwise_rows<Tiles, 3>(task, g0, g1, p0, m, last);
        if (vectors == 2) pointwise_rows<Tiles, 2>(task, g0, g1, p0, m, last);
        if (vectors == 1) pointwise_rows<Tiles, 1>(task, g0, g1, p0, m, last);
      } else if constexpr (kV == 3) {
        if (vectors == 2) pointwise_rows<Tiles, 2>(task, g0, g1, p0, m, last);
        if (vectors == 1) pointwise_rows<Tiles, 1>(task, g0, g1, p0, m, last);
      } else {
        pointwise_rows<Tiles, 1>(task, g0, g1, p0, m, last);
      }
    }
    g0 = g1;
  }
}

struct Avx512Stages : PortableStages {
  static void pointwise(const PointwiseLayer& L, const float* x, int64_t x_pitch, int64_t pixels,
                        const PointwiseOut& out, int64_t c0, int64_t c1) {
    // A plane a few pixels past whole vectors (7x7 = 3 vectors + 1, 14x14 =
    // 12 + 4) computes the whole vectors in tiles and the rest as dot products.
    const int64_t rest = pixels % 16;
    const int64_t tail = pixels > 16 && tail_pays(rest, L.cin_per_group()) ? rest : 0;
    if (pixels - tail == 48) {
      pointwise_with<ThreeVectorTiles>(L, x, x_pitch, pixels, tail, out, c0, c1);
    } else if (L.cin_per_group() > kTallTilesFrom) {
      pointwise_with<TallTiles>(L, x, x_pitch, pixels, tail, out, c0, c1);
    } else {
      pointwise_with<WideTiles>(L, x, x_pitch, pixels, tail, out, c0, c1);
    }
  }

  static void depthwise3x3(const float* x, int64_t x_pitch, int64_t H, int64_t W, int64_t stride, const float* taps,
                           const float* bias, float* y, int64_t y_pitch, int64_t c0, int64_t c1, int64_t images = 1) {
    const int64_t in_plane = H * W, out_plane = window3_out(H, stride) * window3_out(W, stride);
    if (stride == 2) {
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t j = 0; j < images; ++j)
          conv_plane_s2_k3(x + c * x_pitch + j * in_plane, H, W, taps + c * 9, bias != nullptr ? bias[c] : 0.0f,
                           y + c * y_pitch + j * out_plane);
      return;
    }
    const PlanRef plan_ref = windowed_plan_for(H, W, 3);
    const WindowedPlan& plan = *plan_ref;
    constexpr int64_t kBatch = 32;
    const float* xs[kBatch];
    const float* ws[kBatch];
    float shift[kBatch];
    float* ys[kBatch];
    // Planes (c, j) in order, kBatch at a time.
    for (int64_t b0 = c0 * images; b0 < c1 * images; b0 += kBatch) {
      const int64_t count = std::min(kBatch, c1 * images - b0);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t c = (b0 + i) / images, j = (b0 + i) % images;
        xs[i] = x + c * x_pitch + j * in_plane;
        ws[i] = taps + c * 9;
        shift[i] = bias != nullptr ? bias[c] : 0.0f;
        ys[i] = y + c * y_pitch + j * out_plane;
      }
      conv_channels_direct<3>(plan, xs, ws, shift, ys, count);
    }
  }

  // Classes [j0, j1) of `images` images (features C apart, logits `classes`
  // apart): logits[n][j] = bias[j] + dot(weight row j, features n), in tiles
  // of 4 rows x 4 images, 16 partial sums each. The weight is what the head
  // reads most (7.7 MB for 2.0x g3): each tile row group's 4 rows stay in L1
  // while every image passes, so the weight streams from memory once per call
  // (an addmm packs it first, a copy of the whole weight per call).
  static void classifier(const float* w, const float* bias, const float* features, int64_t C, int64_t images,
                         float* logits, int64_t classes, int64_t j0, int64_t j1) {
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) classifier_images<4>(w, bias, features, C, images, logits, classes, j);
    for (; j < j1; ++j) classifier_images<1>(w, bias, features, C, images, logits, classes, j);
  }

  template <int R>
  static void classifier_images(const float* w, const float* bias, const float* features, int64_t C,
                                int64_t images, float* logits, int64_t classes, int64_t j) {
    int64_t n = 0;
    for (; n + 4 <= images; n += 4) classifier_tile<R, 4>(w, bias, features, C, logits, classes, j, n);
    for (; n < images; ++n) classifier_tile<R, 1>(w, bias, features, C, logits, classes, j, n);
  }

  // Rows j .. j + R - 1 x images n .. n + B - 1.
  template <int R, int B>
  static void classifier_tile(const float* w, const float* bias, const float* features, int64_t C, float* logits,
                              int64_t classes, int64_t j, int64_t n) {
    __m512 acc[R][B];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[r][b] = _mm512_setzero_ps();
    for (int64_t k = 0; k < C; k += 16) {
      const __mmask16 m = first_lanes(std::min<int64_t>(16, C - k));
      __m512 f[B];
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) f[b] = load_row16(features + (n + b) * C + k, m);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m512 wv = load_row16(w + (j + r) * C + k, m);
#pragma GCC unroll 4
        for (int b = 0; b < B; ++b) acc[r][b] = _mm512_fmadd_ps(wv, f[b], acc[r][b]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b)
        logits[(n + b) * classes + j + r] = (bias != nullptr ? bias[j + r] : 0.0f) + _mm512_reduce_add_ps(acc[r][b]);
  }

  static void stem(const StemPlan& s, const float* x, float* y, int64_t y_pitch, int64_t r0, int64_t r1) {
    // Conv rows of the band: the windows of pooled rows r0 .. r1 - 1.
    const int64_t h0 = std::max<int64_t>(0, 2 * r0 - 1), h1 = std::min(s.Hc, 2 * r1);
    const int64_t rows = h1 - h0, pitch = s.Wc;
    const int64_t vlen = 2 * ((s.Wp + 15) / 16) * 16 + 34;
    float* conv = thread_scratch(kStemChannels * rows * pitch + vlen);
    float* v = conv + kStemChannels * rows * pitch;
    // v[0] and v past Wc stay -inf; each pooled row overwrites v[1 .. Wc].
    constexpr float kLowest = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < vlen; ++i) v[i] = kLowest;
    for (int64_t co = 0; co < s.cout;) {
      // 16 channels at a time, then 8, 4, 2, 1.
      const int left = static_cast<int>(std::min<int64_t>(kStemChannels, s.cout - co));
      const int R = left == 16 ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
      for (int64_t oh = h0; oh < h1; ++oh) {
        float* dst = conv + (oh - h0) * pitch;
        switch (R) {
          case 16: stem_conv_row<16>(s, x, co, oh, dst, rows * pitch); break;
          case 8: stem_conv_row<8>(s, x, co, oh, dst, rows * pitch); break;
          case 4: stem_conv_row<4>(s, x, co, oh, dst, rows * pitch); break;
          case 2: stem_conv_row<2>(s, x, co, oh, dst, rows * pitch); break;
          default: stem_conv_row<1>(s, x, co, oh, dst, rows * pitch); break;
        }
      }
      for (int r = 0; r < R; ++r) {
        const float* plane = conv + r * rows * pitch;
        for (int64_t pr = r0; pr < r1; ++pr) {
          // The window's conv rows first .. last (two at the top edge).
          const int64_t first = std::max<int64_t>(h0, 2 * pr - 1), last = std::min(h1 - 1, 2 * pr + 1);
          const float* src = plane + (first - h0) * pitch;
          for (int64_t c = 0; c < s.Wc; c += 16) {
            const __mmask16 m = first_lanes(std::min<int64_t>(16, s.Wc - c));
            __m512 column = load_row16(src + c, m);
            for (int64_t k = 1; k <= last - first; ++k)
              column = max_keep_nan(column, load_row16(src + k * pitch + c, m));
            _mm512_mask_storeu_ps(v + 1 + c, m, column);
          }
          max_pool_row(v, s.Wp, y + (co + r) * y_pitch + pr * s.Wp);
        }
      }
      co += R;
    }
  }
};

using Stages = Avx512Stages;

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
