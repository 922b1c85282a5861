// The output pass of the CUDA backend's eval and training forward (y = conv *
// scale + shift, the lane table's eval rows), as lanes that walk their
// outputs with a rolling window of input values in registers.
//
// Why not the staged tiles of lane_work.h: on ShuffleNet's planes the output
// pass is bound by instruction issue, and staging a tile in shared memory
// costs more instructions per output than the conv itself (docs/cuda.md,
// "Instruction counts"). Here every lane reads its own window straight from
// global memory (neighbouring lanes read neighbouring addresses, so the loads
// coalesce and the overlap hits L1), and each input value is loaded once per
// lane: walking down a column (NCHW) or along a row (channels_last), an output
// needs only the S new input rows (columns) its window adds. Lanes share
// nothing, so the kernels need no barrier and no shuffle.
//
//   NCHW           a lane = one output column of one plane, walking `rows`
//                  output rows; the lanes of a warp take consecutive (plane,
//                  column) pairs, so planes narrower than 32 (7x7, 14x14,
//                  28x28) share warps and every lane works. Wider planes are
//                  cut into strips of 32 columns.
//   channels_last  a lane = one channel (32 consecutive channels per warp,
//                  coalesced), walking `strip` outputs along each of `rows`
//                  output rows.
//
// The window has K slots; input row (column) i of a lane's walk lives in slot
// i % K. The walk advances K outputs per iteration with the phases unrolled,
// so every slot index is a compile-time constant (registers, no moves), and
// only the iterations that load lines past the image's end check bounds.
//
// Each output is summed in the order of conv_chunk (kh outer, kw inner), and
// the zero padding is multiplied by the taps, as the reference does (0 * inf
// = NaN there).
//
// The CUDA kernels (cuda/kernels.cuh) run walk_lane for their lane of the
// unit (block, row chunk, strip) of grid (x, y, z); the CPU emulator calls it
// lane after lane. WalkPlan's divisors and offset type are chosen on the host
// (plan_walk, dispatch_walk).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/channel_map.h"
#include "common/conv_geometry.h"
#include "common/host_device.h"
#include "tiled/conv_window.h"
#include "tiled/lane_table.h"
#include "tiled/lane_work.h"
#include "tiled/tile_plan.h"

namespace shufflenet_fused {
namespace tiled {

// A divisor d >= 1. For i and d below 2^31, i / d by a multiply-high, an
// add and a shift (Granlund and Montgomery): m = floor(2^32 (2^s - d) / d) + 1
// with 2^s the first power of two >= d, computed on the host once per plan (a
// division by a run-time value costs ~15 instructions). Larger divisors keep
// only `d`, for the 64-bit kernels' plain division.
struct FastDivisor {
  int64_t d = 1;
  uint32_t m = 1;
  int s = 0;
  FastDivisor() = default;
  explicit FastDivisor(int64_t divisor) : d(divisor) {
    if (d >= (int64_t(1) << 31)) return;
    while ((int64_t(1) << s) < d) ++s;
    m = static_cast<uint32_t>((uint64_t(1) << 32) * ((uint64_t(1) << s) - static_cast<uint64_t>(d)) /
                                  static_cast<uint64_t>(d) +
                              1);
  }
  SF_HD uint32_t div(uint32_t i) const {
#if defined(__CUDA_ARCH__) && defined(__CUDACC__)
    const uint32_t t = __umulhi(i, m);
#else
    const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(i) * m) >> 32);
#endif
    return (t + i) >> s;
  }
};

struct WalkPlan {
  int rows;   // output rows per unit
  int strip;  // NCHW: columns per plane and strip (min(Wo, 32)); channels_last: outputs a lane walks per row
  int64_t blocks;          // NCHW: ceil(N * C * strip / 32) warps; channels_last: N * channel_groups
  int64_t channel_groups;  // channels_last: ceil(C / 32)
  int64_t row_chunks;      // ceil(Ho / rows)
  int64_t strips;          // ceil(Wo / strip)
  // The lane decode's divisors: strip (NCHW), channel_groups (channels_last),
  // C and C / groups (the channel map).
  FastDivisor by_strip, by_groups, by_channels, by_group_size;
  int64_t groups;
  // Offsets within an image (NCHW: a plane), lane indices and channels fit in
  // 31 bits: the kernel runs 32-bit offsets and the fast divisors.
  bool index32;
  SF_HD int64_t units() const { return blocks * row_chunks * strips; }
};

// `min_units`: rows (then, channels_last, strips) are halved while the grid
// has fewer units than this and an NCHW unit still walks at least
// kWalkMinRows rows (a channels_last one kWalkMinStrip columns): each walk
// reloads the K - S rows (columns) of its first window.
constexpr int kWalkMinRows = 4;
constexpr int kWalkMinStrip = 8;

inline WalkPlan plan_walk(const Geo& g, int64_t min_units) {
  WalkPlan p{};
  if (g.channels_last) {
    p.channel_groups = div_up(g.C, kLanes);
    p.blocks = g.N * p.channel_groups;
    p.strip = static_cast<int>(std::min<int64_t>(g.Wo, 1 << 20));
  } else {
    p.strip = static_cast<int>(std::min<int64_t>(g.Wo, kLanes));
    p.blocks = div_up(g.N * g.C * p.strip, kLanes);
  }
  // The walks' offsets reach K lines and columns past the image on each side.
  constexpr int64_t kLimit = int64_t(1) << 31;
  const int64_t per_pixel = g.channels_last ? g.C : 1;
  p.index32 = (g.H + 2 * g.K) * (g.W + 2 * g.K) * per_pixel < kLimit && g.Ho * g.Wo * per_pixel < kLimit &&
              (p.blocks + 1) * kLanes < kLimit && g.C + kLanes < kLimit;
  p.groups = g.groups;
  p.by_strip = FastDivisor(p.strip);
  p.by_groups = FastDivisor(g.channels_last ? p.channel_groups : 1);
  p.by_channels = FastDivisor(g.C);
  p.by_group_size = FastDivisor(g.C / g.groups);
  // channels_last walks each row on its own: rows split at no cost, columns
  // (strips) reload K - S columns. NCHW walks down columns: rows split at the
  // cost of K - S rows.
  const int min_rows = g.channels_last ? 1 : kWalkMinRows;
  p.rows = static_cast<int>(std::min<int64_t>(g.Ho, 1 << 20));
  for (;;) {
    p.row_chunks = div_up(g.Ho, p.rows);
    p.strips = div_up(g.Wo, p.strip);
    if (p.units() >= min_units) break;
    if (p.rows >= 2 * min_rows) {
      p.rows = static_cast<int>(div_up(p.rows, 2));
    } else if (g.channels_last && p.strip >= 2 * kWalkMinStrip) {
      p.strip = static_cast<int>(div_up(p.strip, 2));
    } else {
      break;
    }
  }
  return p;
}

// q = i / d and r = i % d: by the plan's fast divisor in the 32-bit kernels
// (index32: i and d below 2^31), by 64-bit division otherwise.
template <typename index_t>
SF_HD void divmod(int64_t i, const FastDivisor& d, int64_t* q, int64_t* r) {
  if constexpr (sizeof(index_t) == 4) {
    const uint32_t q32 = d.div(static_cast<uint32_t>(i));
    *q = q32;
    *r = i - static_cast<int64_t>(q32) * d.d;
  } else {
    *q = i / d.d;
    *r = i - *q * d.d;
  }
}

// The output channel of lane channel c: dst(c) of common/channel_map.h.
template <typename index_t>
SF_HD int64_t walk_output_channel(const WalkPlan& p, int64_t c) {
  int64_t q, r;
  divmod<index_t>(c, p.by_group_size, &q, &r);
  return r * p.groups + q;
}

SF_HD bool inside(int64_t i, int64_t extent) {
  return static_cast<uint64_t>(i) < static_cast<uint64_t>(extent);
}

// `p`, as a value the compiler must keep: nvcc otherwise re-derives a base
// pointer from the kernel argument and a 64-bit index at every access (four
// instructions per address instead of one). It still points to global
// memory, so accesses through it stay global loads and stores.
template <typename T>
SF_HD T* kept_pointer(T* p) {
#if defined(__CUDA_ARCH__) && defined(__CUDACC__)
  asm("" : "+l"(p));
  __builtin_assume(__isGlobal(p));
#endif
  return p;
}

// The eval coefficients of one lane channel: the rows of LaneCoefs the walk
// reads. (LaneCoefs with load_lane_coefs measured up to 0.17 more
// warp-instructions per output: nvcc keeps the loads of the unused rows.)
template <int K, typename acc_t>
struct EvalCoefs {
  Taps<K * K, acc_t> w;
  acc_t scale, shift;
  SF_HD EvalCoefs(const acc_t* table, int64_t C, int64_t c) {
    w.load(table + c, C);
    scale = table[(K * K + kRowScale) * C + c];
    shift = table[(K * K + kRowShift) * C + c];
  }
};

// The lines a lane's window slides over: input rows (NCHW) or columns
// (channels_last), K values each. Offsets are `index_t` from a per-lane base
// pointer: 32-bit wherever the image (with its padding) has fewer than 2^31
// elements, so a line costs one add and one address computation per load
// address. Value i of the next line is base[off + i] (Contiguous: NCHW rows)
// or base[off + elem_off[i]] (channels_last: elem_off[i] is input row i's
// offset). `pos` is the line's coordinate (row or column) and `extent` the
// image's size along it; value i lies inside the image iff elem_in[i], which
// holds for the whole walk (the column of an NCHW lane, the rows of a
// channels_last output row). So a value outside the image keeps the zero its
// slot starts with, and only the lines at the ends need a check.
template <int K, typename scalar_t, typename index_t, bool Contiguous>
struct WindowLines {
  const scalar_t* base;  // read only inside the image
  index_t off, line_step;
  index_t elem_off[Contiguous ? 1 : K];
  int64_t pos, extent;
  bool elem_in[K];

  template <bool Checked, typename acc_t>
  SF_HD void load_next(acc_t (&slot)[K]) {
    const bool line_in = !Checked || inside(pos, extent);
    SF_UNROLL
    for (int i = 0; i < K; ++i) {
      if (elem_in[i])
        slot[i] = line_in ? static_cast<acc_t>(base[off + (Contiguous ? i : elem_off[i])]) : acc_t(0);
    }
    if (Checked) ++pos;  // the unchecked walk adds its lines to pos when it ends
    off += line_step;
  }
};

// Where the outputs of a walk go: out[off], out[off + step], ...
template <typename scalar_t, typename index_t>
struct WalkOutput {
  scalar_t* out;
  index_t off, step;
  SF_HD void put(scalar_t v) {
    out[off] = v;
    off += step;
  }
};

// z of the window whose first line is in slot (ph * S) % K. `Transposed`:
// the slots hold columns (channels_last), so tap (kh, kw) is value kh of slot
// kw. The taps are summed kh outer, kw inner, as conv_chunk does.
template <int K, int S, bool Transposed, typename acc_t, typename W>
SF_HD acc_t window_sum(const acc_t (&win)[K][K], const W& w, int ph) {
  acc_t z = acc_t(0);
  SF_UNROLL
  for (int kh = 0; kh < K; ++kh) {
    SF_UNROLL
    for (int kw = 0; kw < K; ++kw)
      z += w[kh * K + kw] * (Transposed ? win[(ph * S + kw) % K][kh] : win[(ph * S + kh) % K][kw]);
  }
  return z;
}

// One walk of `count` outputs; `lines` is at the walk's first line (pad
// before the first output's centre).
template <int K, int S, bool Transposed, typename scalar_t, typename acc_t, typename index_t, bool Contiguous>
SF_HD void walk(WindowLines<K, scalar_t, index_t, Contiguous>& lines, int count, WalkOutput<scalar_t, index_t> out,
                const EvalCoefs<K, acc_t>& lc) {
  acc_t win[K][K];
  SF_UNROLL
  for (int i = 0; i < K; ++i) {
    SF_UNROLL
    for (int j = 0; j < K; ++j) win[i][j] = acc_t(0);
  }
  // The first window's lines but the S its output adds (they may lie in the
  // padding before the image).
  SF_UNROLL
  for (int i = 0; i < K - S; ++i) lines.template load_next<true>(win[i]);
  // Output t loads lines pos + t*S .. pos + t*S + S - 1 (none before the
  // image: K - S >= K / 2), all inside it while pos + t*S + S <= extent.
  const int64_t room = lines.extent - lines.pos - S;
  const int inside_outputs = room < 0 ? 0 : (room / S + 1 < count ? static_cast<int>(room / S + 1) : count);
  const int unchecked = inside_outputs / K * K;
  int t = 0;
  for (; t < unchecked; t += K) {
    SF_UNROLL
    for (int ph = 0; ph < K; ++ph) {
      SF_UNROLL
      for (int s = 0; s < S; ++s) lines.template load_next<false>(win[(ph * S + K - S + s) % K]);
      out.put(static_cast<scalar_t>(window_sum<K, S, Transposed>(win, lc.w, ph) * lc.scale + lc.shift));
    }
  }
  lines.pos += static_cast<int64_t>(unchecked) * S;
  for (; t < count; t += K) {
    SF_UNROLL
    for (int ph = 0; ph < K; ++ph) {
      if (t + ph < count) {
        SF_UNROLL
        for (int s = 0; s < S; ++s) lines.template load_next<true>(win[(ph * S + K - S + s) % K]);
        out.put(static_cast<scalar_t>(window_sum<K, S, Transposed>(win, lc.w, ph) * lc.scale + lc.shift));
      }
    }
  }
}

// The same outputs without the rolling window: each output reads its K*K
// values, checked. Few registers: the 64-bit-offset kernels (images of 2^31
// elements and more) and float64 with K = 7, where the window, the taps and
// the loads in flight would not fit in 255 registers, run this.
template <int K, int S, bool Transposed, typename scalar_t, typename acc_t, typename index_t, bool Contiguous>
SF_HD void walk_direct(const WindowLines<K, scalar_t, index_t, Contiguous>& lines, int count,
                       WalkOutput<scalar_t, index_t> out, const EvalCoefs<K, acc_t>& lc) {
  SF_NO_UNROLL  // one output's loads in flight at a time
  for (int t = 0; t < count; ++t) {
    // The window's lines as kept pointers: otherwise nvcc hoists the K*K
    // per-tap offsets out of the loop and runs out of registers at K = 7.
    const scalar_t* line[K];
    SF_UNROLL
    for (int j = 0; j < K; ++j)
      line[j] = kept_pointer(lines.base + (lines.off + (static_cast<index_t>(t) * S + j) * lines.line_step));
    acc_t z = acc_t(0);
    SF_UNROLL
    for (int kh = 0; kh < K; ++kh) {
      SF_UNROLL
      for (int kw = 0; kw < K; ++kw) {
        const int j = Transposed ? kw : kh, i = Transposed ? kh : kw;  // line, value in the line
        const bool in = lines.elem_in[i] && inside(lines.pos + static_cast<int64_t>(t) * S + j, lines.extent);
        z += lc.w[kh * K + kw] * (in ? static_cast<acc_t>(line[j][Contiguous ? i : lines.elem_off[i]]) : acc_t(0));
      }
    }
    out.put(static_cast<scalar_t>(z * lc.scale + lc.shift));
  }
}

// Whether a kernel walks with the rolling window (walk) or without (walk_direct).
template <int K, typename index_t, typename acc_t>
constexpr bool rolling_window() {
  return sizeof(index_t) == 4 && (sizeof(acc_t) == 4 || K < 7);
}

template <int K, int S, bool Transposed, typename scalar_t, typename acc_t, typename index_t, bool Contiguous>
SF_HD void walk_outputs(WindowLines<K, scalar_t, index_t, Contiguous>& lines, int count,
                        WalkOutput<scalar_t, index_t> out, const EvalCoefs<K, acc_t>& lc) {
  if constexpr (rolling_window<K, index_t, acc_t>()) {
    walk<K, S, Transposed>(lines, count, out, lc);
  } else {
    walk_direct<K, S, Transposed>(lines, count, out, lc);
  }
}

// NCHW: lane `lane` of unit (block, row_chunk, strip). The warp's lanes take
// consecutive (plane, column) pairs of the strip's `p.strip` columns, so
// planes narrower than 32 share a warp with every lane busy.
template <int K, int S, typename index_t, typename scalar_t, typename acc_t>
SF_HD void nchw_walk_lane(const TileArgs<scalar_t, acc_t>& a, const WalkPlan& p, int64_t block, int64_t row_chunk,
                          int64_t strip, int lane) {
  const Geo& g = a.geo;
  int64_t plane, col;
  divmod<index_t>(block * kLanes + lane, p.by_strip, &plane, &col);
  const int64_t ow = strip * p.strip + col;
  if (plane >= g.N * g.C || ow >= g.Wo) return;
  const int64_t oh0 = row_chunk * p.rows;
  const int rows = g.Ho - oh0 < p.rows ? static_cast<int>(g.Ho - oh0) : p.rows;
  int64_t n, c;
  divmod<index_t>(plane, p.by_channels, &n, &c);
  const EvalCoefs<K, acc_t> lc(a.table, g.C, c);
  const int64_t output_channel = walk_output_channel<index_t>(p, c);

  constexpr int pad = K / 2;
  const int64_t iw0 = ow * S - pad, ih0 = oh0 * S - pad;
  WindowLines<K, scalar_t, index_t, true> lines{};
  lines.base = kept_pointer(a.x + n * g.xs[0] + c * g.xs[1] + iw0);
  lines.off = static_cast<index_t>(ih0 * g.xs[2]);
  lines.line_step = static_cast<index_t>(g.xs[2]);
  lines.pos = ih0;
  lines.extent = g.H;
  SF_UNROLL
  for (int kw = 0; kw < K; ++kw) lines.elem_in[kw] = inside(iw0 + kw, g.W);
  const WalkOutput<scalar_t, index_t> out{kept_pointer(a.y + n * g.os[0] + output_channel * g.os[1] + ow),
                                          static_cast<index_t>(oh0 * g.os[2]), static_cast<index_t>(g.os[2])};
  walk_outputs<K, S, false>(lines, rows, out, lc);
}

// channels_last: lane `lane` of unit (block, row_chunk, strip).
template <int K, int S, typename index_t, typename scalar_t, typename acc_t>
SF_HD void cl_walk_lane(const TileArgs<scalar_t, acc_t>& a, const WalkPlan& p, int64_t block, int64_t row_chunk,
                        int64_t strip, int lane) {
  const Geo& g = a.geo;
  int64_t n, group;
  divmod<index_t>(block, p.by_groups, &n, &group);
  const int64_t c = group * kLanes + lane;
  if (c >= g.C) return;
  const int64_t oh0 = row_chunk * p.rows, ow0 = strip * p.strip;
  const int rows = g.Ho - oh0 < p.rows ? static_cast<int>(g.Ho - oh0) : p.rows;
  const int cols = g.Wo - ow0 < p.strip ? static_cast<int>(g.Wo - ow0) : p.strip;
  const EvalCoefs<K, acc_t> lc(a.table, g.C, c);
  const int64_t output_channel = walk_output_channel<index_t>(p, c);

  constexpr int pad = K / 2;
  const int64_t iw0 = ow0 * S - pad;
  const scalar_t* image = kept_pointer(a.x + n * g.xs[0] + c);
  for (int r = 0; r < rows; ++r) {
    const int64_t oh = oh0 + r, ih0 = oh * S - pad;
    WindowLines<K, scalar_t, index_t, false> lines{};
    lines.base = image;
    SF_UNROLL
    for (int kh = 0; kh < K; ++kh) {
      lines.elem_off[kh] = static_cast<index_t>((ih0 + kh) * g.xs[2]);
      lines.elem_in[kh] = inside(ih0 + kh, g.H);
    }
    lines.off = static_cast<index_t>(iw0 * g.xs[3]);
    lines.line_step = static_cast<index_t>(g.xs[3]);
    lines.pos = iw0;
    lines.extent = g.W;
    const WalkOutput<scalar_t, index_t> out{kept_pointer(a.y + n * g.os[0] + output_channel + oh * g.os[2]),
                                            static_cast<index_t>(ow0 * g.os[3]), static_cast<index_t>(g.os[3])};
    walk_outputs<K, S, true>(lines, cols, out, lc);
  }
}

template <bool ChannelsLast, typename index_t, int K, int S, typename scalar_t, typename acc_t>
SF_HD void walk_lane(const TileArgs<scalar_t, acc_t>& a, const WalkPlan& p, int64_t block, int64_t row_chunk,
                     int64_t strip, int lane) {
  if constexpr (ChannelsLast) {
    cl_walk_lane<K, S, index_t>(a, p, block, row_chunk, strip, lane);
  } else {
    nchw_walk_lane<K, S, index_t>(a, p, block, row_chunk, strip, lane);
  }
}

// Calls f(std::bool_constant<channels_last>{}, index_t{}) with the offset
// type plan p allows: the executors launch one kernel per layout and offset
// type.
template <typename F>
void dispatch_walk(const Geo& g, const WalkPlan& p, const F& f) {
  if (g.channels_last) {
    if (p.index32) {
      f(std::true_type{}, int32_t{});
    } else {
      f(std::true_type{}, int64_t{});
    }
  } else {
    if (p.index32) {
      f(std::false_type{}, int32_t{});
    } else {
      f(std::false_type{}, int64_t{});
    }
  }
}

}  // namespace tiled
}  // namespace shufflenet_fused
