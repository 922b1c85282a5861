// Bodies of the CPU kernels, compiled once per instruction set.
//
// Included by kernels_baseline.cpp / kernels_avx2.cpp / kernels_avx512.cpp
// after their `#pragma GCC target`, inside namespace SF_CPU_ISA, so each ISA
// gets its own symbols (no ODR mix-ups) and the compiler vectorises every
// loop below for that ISA. Every ATen/STL header is included by the .cpp
// before the pragma; nothing here includes anything.
//
// Work split: eval walks output planes (n, o); training forward and backward
// walk parameter channels (all N planes of one channel per task), so BN
// statistics and the conv-weight gradient are reduced by one thread in a
// fixed order: deterministic, no atomics.

#ifndef SF_CPU_ISA
#error "kernels.h is included by csrc/cpu/kernels_*.cpp only"
#endif

#include "flat_plane.h"
#include "direct_plane.h"
#include "channels_last_rows.h"
#include "stride2_rows.h"
#include "transpose_tiles.h"

// Below this many output elements per task, threads cost more than they save.
constexpr int64_t kMinElementsPerTask = 16384;

inline int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, elements_per_item));
}

// Scratch buffer, zero-initialised (the zero borders of padded planes are
// never written afterwards).
template <typename T>
struct Scratch {
  std::unique_ptr<T[]> data;
  explicit Scratch(int64_t n) : data(new T[std::max<int64_t>(n, 1)]) { fill_zero(data.get(), n); }
  T* get() const { return data.get(); }
};

template <typename acc_t>
std::vector<acc_t> weights_as(const std::vector<double>& weight) {
  return std::vector<acc_t>(weight.begin(), weight.end());
}

// sum_i v[i], blocks in acc_t lanes, blocks added in double.
template <typename acc_t>
inline double sum_flat(const acc_t* __restrict v, int64_t n) {
  double total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kDotBlock) {
    const int64_t i1 = std::min(n, i0 + kDotBlock);
    acc_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; ++i) s += v[i];
    total += static_cast<double>(s);
  }
  return total;
}

// Stages planes n0 .. n0+nb-1 of input channel `c` into the stack `xp`.
template <typename scalar_t, typename acc_t>
inline void stage_planes(const scalar_t* xd, const ConvGeometry& g, const FlatStack& f, int64_t c, int64_t n0,
                         int64_t nb, acc_t* xp) {
  for (int64_t b = 0; b < nb; ++b)
    copy_block(xd + ((n0 + b) * g.C + c) * g.H * g.W, g.W, g.H, g.W, xp + f.in_offset(b), f.Wp);
}

// A block smaller than the last one leaves stale planes below it; flat loops
// read into them only for dropped outputs, but a stale Inf times a zero
// gradient would still be NaN, so clear the buffer when the block shrinks.
template <typename acc_t>
inline void clear_if_shrunk(int64_t nb, int64_t* last_nb, acc_t* buf, int64_t size) {
  if (nb < *last_nb) fill_zero(buf, size);
  *last_nb = nb;
}

// ---------------------------------------------------------------- eval ----

#if defined(SF_CPU_HAS_AVX512)
// Per output channel o: the conv taps with BN folded in (taps[o*K*K + t]),
// the BN shift, and the input channel it reads (the shuffle), for the eval
// kernels that walk output planes.
struct FoldedTaps {
  // Uninitialised arrays, every element written below (sized std::vectors
  // would be zero-filled first: this runs on every call, and at batch 1 the
  // setup is a good part of the op's time).
  std::unique_ptr<float[]> taps, shift;
  std::unique_ptr<int64_t[]> input;

  explicit FoldedTaps(const EvalParams& P)
      : taps(new float[P.g.C * P.g.K * P.g.K]), shift(new float[P.g.C]), input(new int64_t[P.g.C]) {
    const ChannelMap map(P.g.C, P.groups);
    const int64_t KK = P.g.K * P.g.K;
    for (OutputChannelWalk walk(map); walk.o < P.g.C; walk.next()) {
      const LaneChannels lane = walk.lane(P.shuffle_last);
      const int64_t o = lane.output;
      const double scale = P.scale[lane.param];
      for (int64_t t = 0; t < KK; ++t) taps[o * KK + t] = static_cast<float>(P.weight[lane.param * KK + t] * scale);
      shift[o] = static_cast<float>(P.shift[lane.param]);
      input[o] = lane.input;
    }
  }
};

// Stride-1 eval with AVX-512: output planes convolved in place, several per
// windowed block (direct_plane.h), BN folded into the taps.
template <typename scalar_t>
void eval_direct_kernel(const EvalParams& P) {
  const ConvGeometry& g = P.g;
  const DirectPlan& plan = direct_plan_for(g.H, g.W, g.K);
  const int64_t KK = g.K * g.K, plane = g.H * g.W;
  const FoldedTaps folded(P);
  const float* taps = folded.taps.get();
  const float* shift = folded.shift.get();
  const int64_t* input = folded.input.get();
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  dispatch_kernel_size(g.K, 1, [&](auto k_tag, auto) {
    constexpr int K = decltype(k_tag)::value;
    // Tasks: (block of kBlock batch entries, output channel); the planes of a
    // task share their taps (the windowed kernels convolve them together).
    // Consecutive tasks write consecutive output planes and read input planes
    // of the same batch entries (a few hundred KB, which stay in L2).
    constexpr int64_t kBlock = 4;
    const int64_t nblocks = (g.N + kBlock - 1) / kBlock;
    const int64_t pitch = g.C * plane;  // between batch entries
    if (g.N < kBlock) {
      // Too few batch entries to fill a block: tasks are (batch entry, block
      // of kBlock output channels), each plane with its own taps.
      const int64_t cblocks = (g.C + kBlock - 1) / kBlock;
      at::parallel_for(0, g.N * cblocks, grain_for(kBlock * plane), [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / cblocks, o0 = (task % cblocks) * kBlock, count = std::min(kBlock, g.C - o0);
          const scalar_t* xs[kBlock];
          const float* ws[kBlock];
          scalar_t* ys[kBlock];
          for (int64_t i = 0; i < count; ++i) {
            xs[i] = xd + n * pitch + input[o0 + i] * plane;
            ws[i] = taps + (o0 + i) * KK;
            ys[i] = yd + n * pitch + (o0 + i) * plane;
          }
          conv_channels_direct<K>(plan, xs, ws, shift + o0, ys, count);
        }
      });
      return;
    }
    at::parallel_for(0, g.C * nblocks, grain_for(kBlock * plane), [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t o = task % g.C, n0 = (task / g.C) * kBlock;
        conv_planes_direct<K>(plan, xd + n0 * pitch + input[o] * plane, pitch, std::min(kBlock, g.N - n0),
                              taps + o * KK, shift[o], yd + n0 * pitch + o * plane, pitch);
      }
    });
  });
}
#endif

#if defined(SF_CPU_HAS_AVX512)
// Stride-2 3x3 eval with AVX-512: each output plane by rows (stride2_rows.h),
// BN folded into the taps; tasks are output planes, batch-major.
template <typename scalar_t>
void eval_stride2_k3_kernel(const EvalParams& P) {
  const ConvGeometry& g = P.g;
  const FoldedTaps folded(P);
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  const int64_t in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  at::parallel_for(0, g.N * g.C, grain_for(out_plane), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.C, o = task % g.C;
      conv_plane_s2_k3(xd + (n * g.C + folded.input[o]) * in_plane, g.H, g.W, folded.taps.get() + o * 9,
                       folded.shift[o], yd + task * out_plane);
    }
  });
}
#endif

template <typename scalar_t>
void eval_kernel(const EvalParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
#if defined(SF_CPU_HAS_AVX512)
  if constexpr (uses_direct_conv<1, scalar_t, acc_t>()) {
    if (g.stride == 1) return eval_direct_kernel<scalar_t>(P);
    if (g.K == 3) return eval_stride2_k3_kernel<scalar_t>(P);
  }
#endif
  const FlatStack f(g);
  const ChannelMap map(g.C, P.groups);
  const std::vector<acc_t> w = weights_as<acc_t>(P.weight);
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  const int64_t KK = g.K * g.K;
  const int64_t nblocks = f.blocks(g.N);

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    // Tasks: (output channel, block of planes).
    at::parallel_for(0, g.C * nblocks, grain_for(f.planes * g.Ho * g.Wo), [&](int64_t begin, int64_t end) {
      Scratch<acc_t> xp(f.buffer_size()), z(f.flat_size(f.planes));
      int64_t last_nb = f.planes;
      for (int64_t task = begin; task < end; ++task) {
        const LaneChannels lane = lane_for_output(map, task / nblocks, P.shuffle_last);
        const int64_t n0 = (task % nblocks) * f.planes;
        const int64_t nb = std::min(f.planes, g.N - n0);
        clear_if_shrunk(nb, &last_nb, xp.get(), f.buffer_size());
        stage_planes(xd, g, f, lane.input, n0, nb, xp.get());
        conv_flat<K, S>(xp.get(), f.Wp, f.flat_size(nb), w.data() + lane.param * KK, z.get());
        const acc_t a = static_cast<acc_t>(P.scale[lane.param]);
        const acc_t b = static_cast<acc_t>(P.shift[lane.param]);
        for (int64_t p = 0; p < nb; ++p)
          affine_block(z.get() + f.out_offset(p), f.Wp, g.Ho, g.Wo,
                       yd + ((n0 + p) * g.C + lane.output) * g.Ho * g.Wo, g.Wo, a, b);
      }
    });
  });
}

// ----------------------------------------------------- eval, channels_last ----
// x and y are NHWC in memory, so the lanes are channels: each output pixel
// is, per tap, ONE vector loop over C (contiguous loads, nothing staged,
// borders are skipped taps, no padded columns computed), accumulated in input-
// channel order into a row buffer; the row is then written through the
// channel map (in this layout the shuffle is a per-pixel permutation).

// y[o] = z[src[o]] for one pixel of C channels.
template <typename scalar_t, typename acc_t>
inline void permute_pixel(const acc_t* __restrict z, const int32_t* __restrict src, int64_t C,
                          scalar_t* __restrict y) {
#pragma omp simd
  for (int64_t o = 0; o < C; ++o) y[o] = static_cast<scalar_t>(z[src[o]]);
}

// The taps of one output pixel that fall inside the image (NHWC, batch entry
// already applied to x).
template <typename scalar_t>
struct ClWindow {
  const scalar_t* x;
  int64_t W, C, K;
  int64_t ih0, kh0, kh1;  // first window row (may be < 0) and its valid taps
  int64_t iw0, kw0, kw1;
};

// z[c0 + c] = shift[c0 + c] + sum over the window's taps of wt[t*C + c0 + c] *
// x[pixel, c0 + c], for c < cb <= CB. With cb == CB the trip counts are
// constants and acc[] lives in vector registers.
template <int CB, typename scalar_t, typename acc_t>
inline void cl_conv_chunk(const ClWindow<scalar_t>& w, const acc_t* __restrict wt, const acc_t* __restrict shift,
                          int64_t c0, int64_t cb, acc_t* __restrict z) {
  acc_t acc[CB];
  if (cb == CB) {
#pragma omp simd
    for (int c = 0; c < CB; ++c) acc[c] = shift[c0 + c];
    for (int64_t kh = w.kh0; kh < w.kh1; ++kh) {
      for (int64_t kw = w.kw0; kw < w.kw1; ++kw) {
        const scalar_t* xs = w.x + ((w.ih0 + kh) * w.W + w.iw0 + kw) * w.C + c0;
        const acc_t* ws = wt + (kh * w.K + kw) * w.C + c0;
#pragma omp simd
        for (int c = 0; c < CB; ++c) acc[c] += ws[c] * static_cast<acc_t>(xs[c]);
      }
    }
#pragma omp simd
    for (int c = 0; c < CB; ++c) z[c0 + c] = acc[c];
    return;
  }
  for (int64_t c = 0; c < cb; ++c) acc[c] = shift[c0 + c];
  for (int64_t kh = w.kh0; kh < w.kh1; ++kh) {
    for (int64_t kw = w.kw0; kw < w.kw1; ++kw) {
      const scalar_t* xs = w.x + ((w.ih0 + kh) * w.W + w.iw0 + kw) * w.C + c0;
      const acc_t* ws = wt + (kh * w.K + kw) * w.C + c0;
      for (int64_t c = 0; c < cb; ++c) acc[c] += ws[c] * static_cast<acc_t>(xs[c]);
    }
  }
  for (int64_t c = 0; c < cb; ++c) z[c0 + c] = acc[c];
}

template <typename scalar_t>
void eval_channels_last_kernel(const EvalParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  const int64_t C = g.C, K = g.K, KK = g.K * g.K, pad = conv_pad(g.K);
  const ChannelMap map(C, P.groups);
  // Per input channel: the folded taps of its parameter channel, tap-major
  // (wt[t*C + c]), and its shift; per output channel: the input it reads.
  std::vector<acc_t> wt(KK * C), shift(C);
  std::vector<int32_t> src(C);
  bool identity = true;
  for (OutputChannelWalk walk(map); walk.o < C; walk.next()) {
    const LaneChannels lane = walk.lane(P.shuffle_last);
    for (int64_t t = 0; t < KK; ++t)
      wt[t * C + lane.input] = static_cast<acc_t>(P.weight[lane.param * KK + t] * P.scale[lane.param]);
    shift[lane.input] = static_cast<acc_t>(P.shift[lane.param]);
    src[lane.output] = static_cast<int32_t>(lane.input);
    identity = identity && lane.input == lane.output;
  }
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();

#if defined(SF_CPU_HAS_AVX512)
  // 3x3 with AVX-512: register-blocked rows and in-register shuffle
  // (channels_last_rows.h). Tasks: output rows (n, oh).
  if constexpr (kRow16<scalar_t>) {
    if (K == 3) {
      const ClPermutePlan permute(src, C);
      at::parallel_for(0, g.N * g.Ho, grain_for(g.Wo * C), [&](int64_t begin, int64_t end) {
        Scratch<float> z(g.Wo * C + 16);  // + 16: the permutes read whole 16-lane blocks
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / g.Ho, oh = task % g.Ho;
          const scalar_t* xn = xd + n * g.H * g.W * C;
          if (g.stride == 1) {
            cl_row_k3<1>(xn, g.H, g.W, C, oh, g.Wo, wt.data(), shift.data(), z.get());
          } else {
            cl_row_k3<2>(xn, g.H, g.W, C, oh, g.Wo, wt.data(), shift.data(), z.get());
          }
          scalar_t* yr = yd + (n * g.Ho + oh) * g.Wo * C;
          permute.apply_row(z.get(), g.Wo, C, yr);
        }
      });
      return;
    }
  }
#endif

  // Tasks: output rows (n, oh).
  at::parallel_for(0, g.N * g.Ho, grain_for(g.Wo * C), [&](int64_t begin, int64_t end) {
    Scratch<acc_t> z(g.Wo * C);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.Ho, oh = task % g.Ho;
      int64_t kh0, kh1;
      valid_taps(oh, g.H, K, g.stride, &kh0, &kh1);
      const scalar_t* xn = xd + n * g.H * g.W * C;
      const int64_t ih0 = oh * g.stride - pad;
      for (int64_t ow = 0; ow < g.Wo; ++ow) {
        ClWindow<scalar_t> win{xn, g.W, C, K, ih0, kh0, kh1, ow * g.stride - pad, 0, 0};
        valid_taps(ow, g.W, K, g.stride, &win.kw0, &win.kw1);
        acc_t* zr = z.get() + ow * C;
        // Full-width chunks keep their accumulators in registers over all
        // taps. The last C % 16 channels are covered by one more full chunk
        // that ends at C, overlapping the previous one (it rewrites the same
        // values), so only C < 16 takes the runtime-length loop.
        int64_t c0 = 0;
        for (; c0 + 64 <= C; c0 += 64) cl_conv_chunk<64>(win, wt.data(), shift.data(), c0, 64, zr);
        for (; c0 + 16 <= C; c0 += 16) cl_conv_chunk<16>(win, wt.data(), shift.data(), c0, 16, zr);
        if (c0 < C) {
          if (C >= 16) {
            cl_conv_chunk<16>(win, wt.data(), shift.data(), C - 16, 16, zr);
          } else {
            cl_conv_chunk<16>(win, wt.data(), shift.data(), c0, C - c0, zr);
          }
        }
      }
      scalar_t* yr = yd + (n * g.Ho + oh) * g.Wo * C;
      if (identity) {
        const acc_t* zr = z.get();
#pragma omp simd
        for (int64_t i = 0; i < g.Wo * C; ++i) yr[i] = static_cast<scalar_t>(zr[i]);
      } else {
        for (int64_t ow = 0; ow < g.Wo; ++ow) permute_pixel(z.get() + ow * C, src.data(), C, yr + ow * C);
      }
    }
  });
}

// ------------------------------------------------------ training forward ----

// Conv of all N planes of one lane into `zc` (N x Ho x Wo, compact); returns their sum.
template <int K, int S, typename scalar_t, typename acc_t>
double conv_lane(const scalar_t* xd, const ConvGeometry& g, const FlatStack& f, const LaneChannels& lane,
                 const acc_t* w, acc_t* xp, acc_t* zflat, acc_t* zc) {
  const int64_t plane = g.Ho * g.Wo;
  int64_t last_nb = f.planes;
  for (int64_t n0 = 0; n0 < g.N; n0 += f.planes) {
    const int64_t nb = std::min(f.planes, g.N - n0);
    clear_if_shrunk(nb, &last_nb, xp, f.buffer_size());
    stage_planes(xd, g, f, lane.input, n0, nb, xp);
    conv_flat<K, S>(xp, f.Wp, f.flat_size(nb), w, zflat);
    for (int64_t p = 0; p < nb; ++p) copy_block(zflat + f.out_offset(p), f.Wp, g.Ho, g.Wo, zc + (n0 + p) * plane, g.Wo);
  }
  return sum_flat(zc, g.N * plane);
}

// conv_lane, but, with AVX-512, through the in-place masked-load conv
// (stride 1, uses_direct_conv) or the stride-2 3x3 rows (uses_stride2_rows),
// which stage nothing: `xp` and `zflat` are then left untouched.
template <int K, int S, typename scalar_t, typename acc_t>
double conv_lane_compact(const scalar_t* xd, const ConvGeometry& g, const FlatStack& f, const DirectPlanOrNone& plan,
                         const LaneChannels& lane, const acc_t* w, acc_t* xp, acc_t* zflat, acc_t* zc) {
#if defined(SF_CPU_HAS_AVX512)
  if constexpr (uses_direct_conv<S, scalar_t, acc_t>()) {
    const int64_t plane = g.H * g.W;
    conv_planes_direct<K>(plan, xd + lane.input * plane, g.C * plane, g.N, w, 0.0f, zc, plane);
    return sum_flat(zc, g.N * plane);
  }
  if constexpr (uses_stride2_rows<K, S, scalar_t, acc_t>()) {
    const int64_t in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
    for (int64_t n = 0; n < g.N; ++n)
      conv_plane_s2_k3(xd + (n * g.C + lane.input) * in_plane, g.H, g.W, w, 0.0f, zc + n * out_plane);
    return sum_flat(zc, g.N * out_plane);
  }
#endif
  (void)plan;
  return conv_lane<K, S>(xd, g, f, lane, w, xp, zflat, zc);
}

template <typename scalar_t>
void train_kernel(const TrainParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  const FlatStack f(g);
  const auto& plan = make_direct_plan(g);
  const ChannelMap map(g.C, P.groups);
  const std::vector<acc_t> w = weights_as<acc_t>(P.weight);
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  acc_t* mean_d = P.mean.data_ptr<acc_t>();
  acc_t* invstd_d = P.invstd.data_ptr<acc_t>();
  const int64_t plane = g.Ho * g.Wo;
  const int64_t count = g.N * plane;
  const int64_t KK = g.K * g.K;

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    at::parallel_for(0, g.C, grain_for(count), [&](int64_t begin, int64_t end) {
      constexpr bool direct = uses_direct_conv<S, scalar_t, acc_t>();  // stages nothing
      Scratch<acc_t> xp(direct ? 0 : f.buffer_size()), zflat(direct ? 0 : f.flat_size(f.planes)), z(count);
      for (int64_t c = begin; c < end; ++c) {
        const LaneChannels lane = lane_for_param(map, c, P.shuffle_last);
        const double mean =
            conv_lane_compact<K, S>(xd, g, f, plan, lane, w.data() + c * KK, xp.get(), zflat.get(), z.get()) /
            count;
        // Second pass for the variance: the sum of squared deviations does
        // not cancel the way E[z^2] - E[z]^2 does.
        const acc_t m = static_cast<acc_t>(mean);
        double sq = 0;
        for (int64_t i0 = 0; i0 < count; i0 += kDotBlock) {
          const int64_t i1 = std::min(count, i0 + kDotBlock);
          const acc_t* zr = z.get();
          acc_t s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t i = i0; i < i1; ++i) s += (zr[i] - m) * (zr[i] - m);
          sq += static_cast<double>(s);
        }
        const double invstd = 1.0 / std::sqrt(sq / count + P.eps);
        mean_d[c] = static_cast<acc_t>(mean);
        invstd_d[c] = static_cast<acc_t>(invstd);
        const acc_t a = static_cast<acc_t>(P.gamma[c] * invstd);
        const acc_t b = static_cast<acc_t>(P.beta[c] - mean * P.gamma[c] * invstd);
        for (int64_t n = 0; n < g.N; ++n)
          affine_block(z.get() + n * plane, plane, 1, plane, yd + (n * g.C + lane.output) * plane, plane, a, b);
      }
    });
  });
}

// ------------------------------------------------------------- backward ----

template <typename scalar_t>
void backward_kernel(const BackwardParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  const FlatStack f(g);
  const ChannelMap map(g.C, P.groups);
  const std::vector<acc_t> w = weights_as<acc_t>(P.weight);
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  const scalar_t* gd = P.grad_out.data_ptr<scalar_t>();
  scalar_t* gxd = P.grad_x.data_ptr<scalar_t>();
  const int64_t plane = g.Ho * g.Wo;
  const int64_t in_plane = g.H * g.W;
  const int64_t count = g.N * plane;
  const int64_t KK = g.K * g.K;
  const int64_t nblocks = f.blocks(g.N);
  const auto& plan = make_direct_plan(g);

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    at::parallel_for(0, g.C, grain_for(count), [&](int64_t begin, int64_t end) {
      // The in-place path (uses_direct_conv) stages nothing: no stacks for it.
      constexpr bool direct = uses_direct_conv<S, scalar_t, acc_t>();
      constexpr bool recompute_by_rows = uses_stride2_rows<K, S, scalar_t, acc_t>();
      const int64_t stack = direct ? 0 : f.buffer_size();
      Scratch<acc_t> xp(stack), zflat(direct ? 0 : f.flat_size(f.planes)), z(count), dz(count);
      // grad_input is a flat conv of a staged dz with the flipped kernel (a
      // gather: each grad_input element is written once). Stride 1: dz is
      // staged like an input stack. Stride 2: dz lives in flat-output layout
      // (dropped outputs zero, for the weight gradient) and is dilated onto
      // the staged-input grid behind a margin of (K-1)*(Wp+1) zeros, so that
      // staged position p gathers dil[p + kh*Wp + kw] = dz at p - (K-1-kh)*Wp - (K-1-kw).
      const int64_t margin = (K - 1) * (f.Wp + 1);
      Scratch<acc_t> dzbuf(S == 1 ? stack : f.flat_size(f.planes));
      Scratch<acc_t> dil(S == 1 ? 0 : margin + f.buffer_size());
      Scratch<acc_t> gbuf(stack);
      acc_t wflip[K * K];
      for (int64_t c = begin; c < end; ++c) {
        const LaneChannels lane = lane_for_param(map, c, P.shuffle_last);
        const acc_t* wc = w.data() + c * KK;
        for (int t = 0; t < K * K; ++t) wflip[t] = wc[K * K - 1 - t];
        const acc_t m = static_cast<acc_t>(P.mean[c]);

        // Pass 1: recompute z; sum(g) and sum(g * (z - mean)). (The flat
        // conv_lane leaves the input staged in xp, which pass 2 reuses; the
        // stride-2 rows stage nothing.)
        conv_lane_compact<K, S>(xd, g, f, plan, lane, wc, xp.get(), zflat.get(), z.get());
        double sum_g = 0, sum_gzc = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          const scalar_t* gn = gd + (n * g.C + lane.output) * plane;
          const acc_t* zn = z.get() + n * plane;
          for (int64_t i0 = 0; i0 < plane; i0 += kDotBlock) {
            const int64_t i1 = std::min(plane, i0 + kDotBlock);
            acc_t sg = 0, sgz = 0;
#pragma omp simd reduction(+ : sg, sgz)
            for (int64_t i = i0; i < i1; ++i) {
              const acc_t gv = static_cast<acc_t>(gn[i]);
              sg += gv;
              sgz += gv * (zn[i] - m);
            }
            sum_g += static_cast<double>(sg);
            sum_gzc += static_cast<double>(sgz);
          }
        }
        const double dgamma = sum_gzc * P.invstd[c];
        P.grad_beta[c] = sum_g;
        P.grad_gamma[c] = dgamma;

        // dz = A*g + B*(z - mean) + D: BN's backward as one affine map per
        // channel. Frozen statistics (eval) leave only A*g.
        const double A = P.gamma[c] * P.invstd[c];
        const acc_t a = static_cast<acc_t>(A);
        const acc_t b = static_cast<acc_t>(P.training ? -A * P.invstd[c] * dgamma / count : 0.0);
        const acc_t d = static_cast<acc_t>(P.training ? -A * sum_g / count : 0.0);
        for (int64_t n = 0; n < g.N; ++n) {
          const scalar_t* gn = gd + (n * g.C + lane.output) * plane;
          const acc_t* zn = z.get() + n * plane;
          acc_t* dzn = dz.get() + n * plane;
#pragma omp simd
          for (int64_t i = 0; i < plane; ++i) dzn[i] = a * static_cast<acc_t>(gn[i]) + b * (zn[i] - m) + d;
        }

        double gw[K * K] = {};
#if defined(SF_CPU_HAS_AVX512)
        // Stride 1 with AVX-512: both straight from the compact planes, in
        // place (direct_plane.h); grad_x is the conv of dz with the flipped
        // kernel, whose border masks are the forward's.
        if constexpr (direct) {
          weight_grad_direct<K>(plan, dz.get(), xd + lane.input * in_plane, g.C * in_plane, g.N, gw);
          conv_planes_direct<K>(plan, dz.get(), plane, g.N, wflip, 0.0f, gxd + lane.input * in_plane, g.C * in_plane);
          for (int t = 0; t < K * K; ++t) P.grad_w[c * KK + t] = gw[t];
          continue;
        }
#endif
        // Pass 2, per block of planes: grad_w += corr(dz, x); grad_x = conv_transpose(dz, w).
        int64_t last_nb = f.planes;
        for (int64_t n0 = 0; n0 < g.N; n0 += f.planes) {
          const int64_t nb = std::min(f.planes, g.N - n0);
          // With one block per channel, conv_lane left exactly these planes
          // staged in xp (unless pass 1 ran by rows).
          if (nblocks > 1 || recompute_by_rows) {
            clear_if_shrunk(nb, &last_nb, xp.get(), f.buffer_size());
            stage_planes(xd, g, f, lane.input, n0, nb, xp.get());
          }
          if (nb < f.planes) {
            fill_zero(dzbuf.get(), S == 1 ? f.buffer_size() : f.flat_size(f.planes));
            if (S != 1) fill_zero(dil.get(), margin + f.buffer_size());
          }
          acc_t* dz_flat;
          if constexpr (S == 1) {
            for (int64_t p = 0; p < nb; ++p)
              copy_block(dz.get() + (n0 + p) * plane, g.Wo, g.Ho, g.Wo, dzbuf.get() + f.in_offset(p), f.Wp);
            dz_flat = dzbuf.get() + f.in_offset(0);  // output row r of the stack sits at staged row r + pad
          } else {
            for (int64_t p = 0; p < nb; ++p)
              copy_block(dz.get() + (n0 + p) * plane, g.Wo, g.Ho, g.Wo, dzbuf.get() + f.out_offset(p), f.Wp);
            dz_flat = dzbuf.get();
          }
          weight_grad_flat<K, S>(dz_flat, xp.get(), f.Wp, f.flat_size(nb), gw);
          // grad_input of plane p, row h: flat output row p*R + h of the gather
          // over the staged dz (stride 1), staged row p*R + pad + h of the
          // gather over the dilated dz (stride 2).
          if constexpr (S == 1) {
            conv_flat<K, 1>(dzbuf.get(), f.Wp, f.flat_size(nb), wflip, gbuf.get());
          } else {
            dilate2_flat(dz_flat, f.flat_size(nb), dil.get() + margin);
            conv_flat<K, 1>(dil.get(), f.Wp, nb * f.R * f.Wp, wflip, gbuf.get());
          }
          for (int64_t p = 0; p < nb; ++p) {
            const acc_t* src = gbuf.get() + (S == 1 ? f.out_offset(p) : f.in_offset(p));
            copy_block(src, f.Wp, g.H, g.W, gxd + ((n0 + p) * g.C + lane.input) * in_plane, g.W);
          }
        }
        for (int t = 0; t < K * K; ++t) P.grad_w[c * KK + t] = gw[t];
      }
    });
  });
}

// ------------------------------------------------------------ relayout ----

void relayout(const RelayoutParams& p) {
  const int64_t N = p.src.size(0), C = p.src.size(1), HW = p.src.size(2) * p.src.size(3);
  // NCHW -> NHWC transposes each batch entry's C x HW matrix; NHWC -> NCHW its HW x C one.
  const bool to_channels_last = p.src.is_contiguous();
  const int64_t rows = to_channels_last ? C : HW, cols = to_channels_last ? HW : C;
  const float* a = p.src.data_ptr<float>();
  float* b = p.dst.data_ptr<float>();
  // Tasks: (batch entry, band of 16 pixels), all channels: the NHWC side (a
  // pixel's C values, rarely a multiple of 16 floats) is then read or
  // written whole by one task, never a cache line split between tasks.
  const int64_t bands = (HW + 15) / 16;
  at::parallel_for(0, N * bands, grain_for(16 * C), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands, pixel0 = (task % bands) * 16, pixels = std::min<int64_t>(16, HW - pixel0);
      const float* an = a + n * rows * cols;
      float* bn = b + n * rows * cols;
      for (int64_t c0 = 0; c0 < C; c0 += 16) {
        const int64_t channels = std::min<int64_t>(16, C - c0);
        // The tile's first row and column of the source matrix, and its extent.
        const int64_t i0 = to_channels_last ? c0 : pixel0, j0 = to_channels_last ? pixel0 : c0;
        const int64_t ri = to_channels_last ? channels : pixels, cj = to_channels_last ? pixels : channels;
        if (ri == 16 && cj == 16) {  // no masks, no per-row tests
          transpose_tile<true>(an, rows, cols, i0, j0, ri, cj, bn);
        } else {
          transpose_tile<false>(an, rows, cols, i0, j0, ri, cj, bn);
        }
      }
    }
  });
}

// ------------------------------------------------------- entry points ----

void eval(const EvalParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_eval_cpu",
                                  [&] { eval_kernel<scalar_t>(p); });
}

void eval_channels_last(const EvalParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_eval_channels_last_cpu",
                                  [&] { eval_channels_last_kernel<scalar_t>(p); });
}

void train(const TrainParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_train_cpu",
                                  [&] { train_kernel<scalar_t>(p); });
}

void backward(const BackwardParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_backward_cpu",
                                  [&] { backward_kernel<scalar_t>(p); });
}
