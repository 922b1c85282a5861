// The work of one warp and one lane of every CUDA kernel, device-agnostic.
//
// A kernel in kernels.cuh is a thin loop: decode the work unit, call the
// phase functions below, synchronise or shuffle between phases. The CPU
// emulator (csrc/cpu/index_math_check.cpp) runs the same phase functions over
// all units and lanes in plain loops, so everything that decides *which*
// element goes where (tiles, halos, borders, partial slots, the channel map,
// the BN formulas) is exercised by the CPU tests. Only the vector loads, the
// shuffles and the barriers are CUDA-only.
//
// Work decomposition (see benchmarks/NOTES.md, "CUDA kernels"):
//   NCHW           one warp = one (n, lane channel c, output tile); the input
//                  tile + halo of plane (n, c) is staged in shared memory; a
//                  lane computes chunks of kChunk outputs along W.
//   channels_last  one warp = one (n, output tile, 32 consecutive channels);
//                  lane = channel, loads are 32 consecutive channels of one
//                  pixel; a lane walks the tile chunk by chunk.
// Per-channel reductions: every unit writes one partial per lane channel
// into slot (n, tile); finalize kernels add the slots of a channel in a fixed
// order (strands, then strands in order), in double. No atomics anywhere.
#pragma once

#include <cstdint>
#include <type_traits>

#include "tiled/conv_window.h"
#include "common/channel_map.h"
#include "common/conv_geometry.h"

namespace shufflenet_fused {
namespace work {

using math::kChunk;

constexpr int kLanes = 32;
constexpr int kWarpsPerBlock = 8;
// Shared memory per warp of the NCHW kernels; 8 warps stay under the 48 KiB
// that needs no opt-in.
constexpr int kWarpSmemBytes = 6 * 1024;
// Below this many warp units a grid does not fill an H100 (132 SMs x 16
// warps); planners then trade per-lane work for more units.
constexpr int64_t kMinUnits = 2048;
// Finalize kernels: a block reduces kFinalChannels channels, each over
// kFinalStrands strands of slots.
constexpr int kFinalChannels = 8;
constexpr int kFinalStrands = 128;

enum class Mode : int {
  Eval,       // write y = conv * folded scale + shift
  Stats,      // partial moments of the conv output (training forward, pass 1)
  GradStats,  // partial sum(g), sum(g * (z - mean)) (backward, pass 1)
  Dz,         // write dz = BN backward(g); partial weight gradient (backward, pass 2)
};

// Rows of the lane table after the K*K weight taps; the table is
// [(K*K + kCoefRows) x C], indexed by lane (input) channel so that the
// channels_last kernels read it with coalesced loads.
enum : int { kRowShift = 0, kRowMean = 1, kRowA = 2, kRowB = 3, kRowD = 4, kCoefRows = 5 };

// Shapes and element strides (n, c, h, w) of input-shaped tensors (x,
// grad_x) and output-shaped tensors (y, grad_output, dz) in the kernel's layout.
struct Geo {
  int64_t N, C, H, W, Ho, Wo;
  int K, S;
  int64_t groups;
  bool shuffle_last, channels_last;
  int64_t xs[4], os[4];
};

inline Geo make_geo(int64_t N, int64_t C, int64_t H, int64_t W, int K, int S, int64_t groups,
                    bool shuffle_last, bool channels_last) {
  Geo g{};
  g.N = N;
  g.C = C;
  g.H = H;
  g.W = W;
  g.K = K;
  g.S = S;
  g.Ho = conv_out_size(H, K, S);
  g.Wo = conv_out_size(W, K, S);
  g.groups = groups;
  g.shuffle_last = shuffle_last;
  g.channels_last = channels_last;
  const int64_t in[4] = {channels_last ? H * W * C : C * H * W, channels_last ? 1 : H * W,
                         channels_last ? W * C : W, channels_last ? C : 1};
  const int64_t out[4] = {channels_last ? g.Ho * g.Wo * C : C * g.Ho * g.Wo, channels_last ? 1 : g.Ho * g.Wo,
                          channels_last ? g.Wo * C : g.Wo, channels_last ? C : 1};
  for (int i = 0; i < 4; ++i) {
    g.xs[i] = in[i];
    g.os[i] = out[i];
  }
  return g;
}

// ----------------------------------------------------------------- plans ----

inline int64_t div_up(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return div_up(a, b) * b; }
inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Output tiles of the conv passes (all Modes).
struct TilePlan {
  int TH, TW, chunks_w;  // output tile of one unit; TW = chunks_w * kChunk
  int in_rows, pitch;    // NCHW: staged input tile, pitch a multiple of 4
  int smem_elems;        // NCHW: per warp
  int64_t tiles_h, tiles_w;
  int64_t channel_groups;  // NCHW: C; channels_last: ceil(C / 32)
  int64_t units;           // warp work units
  int64_t slots;           // partial slots per channel: N * tiles_h * tiles_w
};

// Splits `extent` into tiles of at most `target` (balanced, none empty).
inline void balance_tiles(int64_t extent, int64_t target, int64_t* tile, int64_t* count) {
  const int64_t t = clamp64(target, 1, extent);
  const int64_t n0 = div_up(extent, t);
  *tile = div_up(extent, n0);
  *count = div_up(extent, *tile);
}

inline void plan_tile_columns(const Geo& g, int64_t max_tw, TilePlan* p) {
  int64_t tw, tiles_w;
  balance_tiles(g.Wo, max_tw, &tw, &tiles_w);
  tw = round_up(tw, kChunk);  // whole chunks; the last one may run past Wo
  p->TW = static_cast<int>(tw);
  p->tiles_w = div_up(g.Wo, tw);
  p->chunks_w = static_cast<int>(tw / kChunk);
}

inline TilePlan plan_nchw_tile(const Geo& g, int acc_bytes) {
  TilePlan p{};
  plan_tile_columns(g, 32, &p);
  const int seg_padded = ((kChunk - 1) * g.S + g.K + 3) / 4 * 4;
  p.pitch = (p.chunks_w - 1) * kChunk * g.S + seg_padded;
  // About 3 chunks per lane; fewer rows while the staged tile is too big.
  int64_t target = 96 / p.chunks_w;
  for (;;) {
    int64_t th;
    balance_tiles(g.Ho, target, &th, &p.tiles_h);
    p.TH = static_cast<int>(th);
    p.in_rows = (p.TH - 1) * g.S + g.K;
    if (static_cast<int64_t>(p.in_rows) * p.pitch * acc_bytes <= kWarpSmemBytes || p.TH == 1) break;
    target = p.TH - 1;
  }
  p.smem_elems = p.in_rows * p.pitch;
  p.channel_groups = g.C;
  p.slots = g.N * p.tiles_h * p.tiles_w;
  p.units = p.slots * g.C;
  return p;
}

inline TilePlan plan_cl_tile(const Geo& g) {
  TilePlan p{};
  plan_tile_columns(g, 32, &p);
  p.channel_groups = div_up(g.C, kLanes);
  // About 128 outputs per lane; fewer while the grid has too few units.
  int64_t target = 128 / p.TW;
  for (;;) {
    int64_t th;
    balance_tiles(g.Ho, target, &th, &p.tiles_h);
    p.TH = static_cast<int>(th);
    p.slots = g.N * p.tiles_h * p.tiles_w;
    p.units = p.slots * p.channel_groups;
    if (p.units >= kMinUnits || p.TH == 1) break;
    target = p.TH / 2;
  }
  return p;
}

// Input tiles of the grad_input pass.
struct InputGradPlan {
  int TH, TW;              // input tile of one unit
  int dz_rows, dz_cols;    // NCHW: staged dz region (outputs covering the tile)
  int smem_elems;          // NCHW: per warp
  int64_t tiles_h, tiles_w;
  int64_t channel_groups;  // NCHW: C; channels_last: ceil(C / 32)
  int64_t units;
};

inline InputGradPlan plan_nchw_input_grad(const Geo& g, int acc_bytes) {
  InputGradPlan p{};
  int64_t tw, th;
  balance_tiles(g.W, 64, &tw, &p.tiles_w);
  p.TW = static_cast<int>(tw);
  const int pad = g.K / 2;
  // The outputs covering input rows [i0, i0 + TH) span at most
  // (TH - 1 + 2 pad) / S + 1 rows, wherever the tile starts.
  p.dz_cols = (p.TW - 1 + 2 * pad) / g.S + 1;
  int64_t target = 256 / p.TW;
  for (;;) {
    balance_tiles(g.H, target, &th, &p.tiles_h);
    p.TH = static_cast<int>(th);
    p.dz_rows = (p.TH - 1 + 2 * pad) / g.S + 1;
    if (static_cast<int64_t>(p.dz_rows) * p.dz_cols * acc_bytes <= kWarpSmemBytes || p.TH == 1) break;
    target = p.TH - 1;
  }
  p.smem_elems = p.dz_rows * p.dz_cols;
  p.channel_groups = g.C;
  p.units = g.N * g.C * p.tiles_h * p.tiles_w;
  return p;
}

inline InputGradPlan plan_cl_input_grad(const Geo& g) {
  InputGradPlan p{};
  int64_t tw, th;
  balance_tiles(g.W, 32, &tw, &p.tiles_w);
  p.TW = static_cast<int>(tw);
  p.channel_groups = div_up(g.C, kLanes);
  int64_t target = 128 / p.TW;
  for (;;) {
    balance_tiles(g.H, target, &th, &p.tiles_h);
    p.TH = static_cast<int>(th);
    p.units = g.N * p.tiles_h * p.tiles_w * p.channel_groups;
    if (p.units >= kMinUnits || p.TH == 1) break;
    target = p.TH / 2;
  }
  return p;
}

// ----------------------------------------------------------------- units ----

struct Unit {
  int64_t n, c;  // c: the lane channel (NCHW) or the first of 32 channels (channels_last)
  int64_t th, tw;
  int64_t slot;  // partial slot of this unit: (n * tiles_h + th) * tiles_w + tw
};

// NCHW order: u = ((n * C + c) * tiles_h + th) * tiles_w + tw, so the warps of
// a block work on neighbouring tiles of the same planes.
SF_HD Unit decode_nchw_unit(int64_t u, int64_t tiles_h, int64_t tiles_w, int64_t C) {
  Unit t;
  t.tw = u % tiles_w;
  u /= tiles_w;
  t.th = u % tiles_h;
  u /= tiles_h;
  t.c = u % C;
  t.n = u / C;
  t.slot = (t.n * tiles_h + t.th) * tiles_w + t.tw;
  return t;
}

// channels_last order: u = ((n * tiles_h + th) * tiles_w + tw) * groups + cg, so
// the warps of a block cover all channels of neighbouring pixels.
SF_HD Unit decode_cl_unit(int64_t u, int64_t tiles_h, int64_t tiles_w, int64_t channel_groups) {
  Unit t;
  t.c = (u % channel_groups) * kLanes;
  u /= channel_groups;
  t.tw = u % tiles_w;
  u /= tiles_w;
  t.th = u % tiles_h;
  t.n = u / tiles_h;
  t.slot = (t.n * tiles_h + t.th) * tiles_w + t.tw;
  return t;
}

// ------------------------------------------------------------ lane table ----

template <int KK, typename acc_t>
struct LaneCoefs {
  math::Taps<KK, acc_t> w;
  acc_t shift, mean, A, B, D;
};

template <int KK, typename acc_t>
SF_HD void load_lane_coefs(const acc_t* table, int64_t C, int64_t c, LaneCoefs<KK, acc_t>& lc) {
  lc.w.load(table + c, C);
  lc.shift = table[(KK + kRowShift) * C + c];
  lc.mean = table[(KK + kRowMean) * C + c];
  lc.A = table[(KK + kRowA) * C + c];
  lc.B = table[(KK + kRowB) * C + c];
  lc.D = table[(KK + kRowD) * C + c];
}

enum class Prep : int {
  Eval,      // taps = w * scale, shift row: BN folded with running statistics
  Raw,       // taps = w (statistics pass of the training forward)
  Backward,  // taps = w, mean row, A = gamma * invstd (B = D = 0: frozen statistics)
};

template <typename scalar_t, typename acc_t>
struct PrepArgs {
  const scalar_t* weight;  // (C, K*K), indexed by parameter channel
  // Per parameter channel; gamma/beta may be null (1 and 0).
  const acc_t* mean;
  const acc_t* var;
  const acc_t* invstd;
  const acc_t* gamma;
  const acc_t* beta;
  double eps;
  int KK;
  int64_t C, groups;
  bool shuffle_last;
  acc_t* table;
};

template <typename scalar_t, typename acc_t>
SF_HD double weight_at(const scalar_t* w, int64_t i) {
  return static_cast<double>(static_cast<acc_t>(w[i]));
}

template <typename scalar_t, typename acc_t>
SF_HD void prep_lane(Prep kind, const PrepArgs<scalar_t, acc_t>& a, int64_t c) {
  const ChannelMap map(a.C, a.groups, a.shuffle_last);
  const int64_t p = map.lane_of_input(c).param;
  const double gamma = a.gamma ? static_cast<double>(a.gamma[p]) : 1.0;
  const double beta = a.beta ? static_cast<double>(a.beta[p]) : 0.0;
  double scale = 1.0, shift = 0.0, mean = 0.0, A = 0.0;
  if (kind == Prep::Eval) {
    const ScaleShift f = fold_running_stats(static_cast<double>(a.mean[p]),
                                                        static_cast<double>(a.var[p]), gamma, beta, a.eps);
    scale = f.scale;
    shift = f.shift;
  } else if (kind == Prep::Backward) {
    mean = static_cast<double>(a.mean[p]);
    A = gamma * static_cast<double>(a.invstd[p]);
  }
  for (int t = 0; t < a.KK; ++t)
    a.table[t * a.C + c] = static_cast<acc_t>(weight_at<scalar_t, acc_t>(a.weight, p * a.KK + t) * scale);
  a.table[(a.KK + kRowShift) * a.C + c] = static_cast<acc_t>(shift);
  a.table[(a.KK + kRowMean) * a.C + c] = static_cast<acc_t>(mean);
  a.table[(a.KK + kRowA) * a.C + c] = static_cast<acc_t>(A);
  a.table[(a.KK + kRowB) * a.C + c] = acc_t(0);
  a.table[(a.KK + kRowD) * a.C + c] = acc_t(0);
}

// ------------------------------------------------------------ conv passes ----

template <typename scalar_t, typename acc_t>
struct TileArgs {
  const scalar_t* x;   // input
  const scalar_t* g;   // grad_output (GradStats, Dz)
  scalar_t* y;         // output (Eval)
  acc_t* dz;           // Dz: BN-backward output, output-shaped, at the *lane* channel
  const acc_t* table;  // lane table
  // Partials [values x slots x C]: Stats (n, mean, m2), GradStats (sum_g,
  // sum_gzc), Dz (the K*K weight-gradient taps).
  acc_t* part;
  acc_t* part_g;  // Dz: sum_g, sum_gzc partials as well (frozen statistics); may be null
  Geo geo;
};

// Fixed-size sums reduced across lanes.
template <int R, typename acc_t>
struct Sums {
  acc_t v[R];
};

template <int R, typename acc_t>
SF_HD Sums<R, acc_t> combine(const Sums<R, acc_t>& a, const Sums<R, acc_t>& b) {
  Sums<R, acc_t> s;
  SF_UNROLL
  for (int i = 0; i < R; ++i) s.v[i] = a.v[i] + b.v[i];
  return s;
}

template <typename acc_t>
SF_HD Moments<acc_t> combine(const Moments<acc_t>& a, const Moments<acc_t>& b) {
  return merge(a, b);
}

// What one lane accumulates over its outputs, and the partial it reduces to.
template <Mode M, int KK, typename acc_t>
struct LaneAcc {
  using Partial = Sums<1, acc_t>;  // Eval: nothing
  SF_HD Partial partial() const { return Partial{{acc_t(0)}}; }
};

template <int KK, typename acc_t>
struct LaneAcc<Mode::Stats, KK, acc_t> {
  using Partial = Moments<acc_t>;
  ShiftedSums<acc_t> sums;
  SF_HD Partial partial() const { return sums.moments(); }
};

template <int KK, typename acc_t>
struct LaneAcc<Mode::GradStats, KK, acc_t> {
  using Partial = Sums<2, acc_t>;
  acc_t sg = acc_t(0), sgz = acc_t(0);
  SF_HD Partial partial() const { return Partial{{sg, sgz}}; }
};

template <int KK, typename acc_t>
struct LaneAcc<Mode::Dz, KK, acc_t> {
  using Partial = Sums<KK + 2, acc_t>;
  acc_t gw[KK] = {};
  acc_t sg = acc_t(0), sgz = acc_t(0);
  SF_HD Partial partial() const {
    Partial p;
    SF_UNROLL
    for (int t = 0; t < KK; ++t) p.v[t] = gw[t];
    p.v[KK] = sg;
    p.v[KK + 1] = sgz;
    return p;
  }
};

// Writes the (reduced) partial of lane channel c into slot `slot`.
template <Mode M, int KK, typename scalar_t, typename acc_t>
SF_HD void write_partial(const TileArgs<scalar_t, acc_t>& a, int64_t slots, int64_t slot, int64_t c,
                         const typename LaneAcc<M, KK, acc_t>::Partial& p) {
  const int64_t C = a.geo.C;
  const int64_t at = slot * C + c, step = slots * C;
  if constexpr (M == Mode::Stats) {
    a.part[at] = p.n;
    a.part[at + step] = p.mean;
    a.part[at + 2 * step] = p.m2;
  } else if constexpr (M == Mode::GradStats) {
    a.part[at] = p.v[0];
    a.part[at + step] = p.v[1];
  } else if constexpr (M == Mode::Dz) {
    for (int t = 0; t < KK; ++t) a.part[at + t * step] = p.v[t];
    if (a.part_g) {
      a.part_g[at] = p.v[KK];
      a.part_g[at + step] = p.v[KK + 1];
    }
  }
}

// Everything one chunk does after its conv outputs z are known.
template <Mode M, int K, int S, typename scalar_t, typename acc_t, typename Rows>
SF_HD void chunk_epilogue(const TileArgs<scalar_t, acc_t>& a, const LaneChannels& lane,
                          const LaneCoefs<K * K, acc_t>& lc, int64_t n, int64_t oh, int64_t ow0, int nvalid,
                          const Rows& rows, const acc_t (&z)[kChunk], LaneAcc<M, K * K, acc_t>& acc) {
  const Geo& g = a.geo;
  if constexpr (M == Mode::Eval) {
    scalar_t* out = a.y + n * g.os[0] + lane.output * g.os[1] + oh * g.os[2] + ow0 * g.os[3];
    SF_UNROLL
    for (int v = 0; v < kChunk; ++v)
      if (v < nvalid) out[v * g.os[3]] = static_cast<scalar_t>(z[v] + lc.shift);
  } else if constexpr (M == Mode::Stats) {
    SF_UNROLL
    for (int v = 0; v < kChunk; ++v)
      if (v < nvalid) acc.sums.add(z[v]);
  } else {
    const scalar_t* go = a.g + n * g.os[0] + lane.output * g.os[1] + oh * g.os[2] + ow0 * g.os[3];
    acc_t gv[kChunk];
    SF_UNROLL
    for (int v = 0; v < kChunk; ++v) gv[v] = v < nvalid ? static_cast<acc_t>(go[v * g.os[3]]) : acc_t(0);
    SF_UNROLL
    for (int v = 0; v < kChunk; ++v) {
      if (v < nvalid) {
        acc.sg += gv[v];
        acc.sgz += gv[v] * (z[v] - lc.mean);
      }
    }
    if constexpr (M == Mode::Dz) {
      acc_t d[kChunk];
      SF_UNROLL
      for (int v = 0; v < kChunk; ++v) d[v] = v < nvalid ? lc.A * gv[v] + lc.B * (z[v] - lc.mean) + lc.D : acc_t(0);
      acc_t* dzo = a.dz + n * g.os[0] + lane.input * g.os[1] + oh * g.os[2] + ow0 * g.os[3];
      SF_UNROLL
      for (int v = 0; v < kChunk; ++v)
        if (v < nvalid) dzo[v * g.os[3]] = d[v];
      if constexpr (K >= 5 && std::is_same<Rows, math::TileRows<acc_t>>::value) {
        const math::TileRowsReloaded<acc_t> reload{rows.origin, rows.pitch};
        math::accumulate_weight_grad_chunk<K, S>(reload, d, acc.gw);
      } else {
        math::accumulate_weight_grad_chunk<K, S>(rows, d, acc.gw);
      }
    }
  }
}

SF_HD int valid_in_chunk(int64_t Wo, int64_t ow0) {
  return Wo - ow0 < kChunk ? static_cast<int>(Wo - ow0) : kChunk;
}

// NCHW, phase 1 (all lanes): stage the input tile + halo of plane (n, c) as
// acc_t, zeros outside the image, so phase 2 runs without border checks.
template <int K, int S, typename scalar_t, typename acc_t>
SF_HD void nchw_stage_input(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p, const Unit& u, acc_t* tile,
                            int lane, int nlanes) {
  const Geo& g = a.geo;
  const scalar_t* plane = a.x + u.n * g.xs[0] + u.c * g.xs[1];
  const int64_t ih0 = u.th * p.TH * S - K / 2;
  const int64_t iw0 = u.tw * p.TW * S - K / 2;
  const int total = p.in_rows * p.pitch;
  for (int e = lane; e < total; e += nlanes) {
    const int r = e / p.pitch;
    const int q = e - r * p.pitch;
    const int64_t ih = ih0 + r, iw = iw0 + q;
    tile[e] = (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) ? static_cast<acc_t>(plane[ih * g.xs[2] + iw])
                                                          : acc_t(0);
  }
}

// NCHW, phase 2 (one lane): chunks lane, lane + nlanes, ... of the tile.
template <Mode M, int K, int S, typename scalar_t, typename acc_t>
SF_HD void nchw_lane_work(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p, const Unit& u,
                          const LaneChannels& lane, const LaneCoefs<K * K, acc_t>& lc, const acc_t* tile,
                          int l, int nlanes, LaneAcc<M, K * K, acc_t>& acc) {
  const Geo& g = a.geo;
  const int chunks = p.TH * p.chunks_w;
  for (int q = l; q < chunks; q += nlanes) {
    const int r = q / p.chunks_w;
    const int j = q - r * p.chunks_w;
    const int64_t oh = u.th * p.TH + r;
    const int64_t ow0 = u.tw * p.TW + j * kChunk;
    if (oh >= g.Ho || ow0 >= g.Wo) continue;
    const math::TileRows<acc_t> rows{tile + r * S * p.pitch + j * kChunk * S, p.pitch};
    acc_t z[kChunk];
    math::conv_chunk<K, S>(rows, lc.w, z);
    chunk_epilogue<M, K, S>(a, lane, lc, u.n, oh, ow0, valid_in_chunk(g.Wo, ow0), rows, z, acc);
  }
}

// channels_last (one lane, channel lane.input): the whole tile, chunk by chunk.
template <Mode M, int K, int S, typename scalar_t, typename acc_t>
SF_HD void cl_lane_work(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p, const Unit& u,
                        const LaneChannels& lane, const LaneCoefs<K * K, acc_t>& lc,
                        LaneAcc<M, K * K, acc_t>& acc) {
  const Geo& g = a.geo;
  const scalar_t* image = a.x + u.n * g.xs[0] + lane.input * g.xs[1];
  for (int r = 0; r < p.TH; ++r) {
    const int64_t oh = u.th * p.TH + r;
    if (oh >= g.Ho) break;
    for (int j = 0; j < p.chunks_w; ++j) {
      const int64_t ow0 = u.tw * p.TW + j * kChunk;
      if (ow0 >= g.Wo) break;
      const math::GlobalRows<K, S, scalar_t, acc_t> rows{image, g.xs[2], g.xs[3], g.H, g.W,
                                                         oh * S - K / 2, ow0 * S - K / 2};
      acc_t z[kChunk];
      math::conv_chunk<K, S>(rows, lc.w, z);
      chunk_epilogue<M, K, S>(a, lane, lc, u.n, oh, ow0, valid_in_chunk(g.Wo, ow0), rows, z, acc);
    }
  }
}

// --------------------------------------------------------- grad_input pass ----

template <typename scalar_t, typename acc_t>
struct InputGradArgs {
  const acc_t* dz;     // output-shaped, at the lane channel
  const acc_t* table;  // lane table (raw taps)
  scalar_t* gx;
  Geo geo;
};

// Origin (first output row/column) of the dz region staged for an input tile.
SF_HD int64_t dz_origin(int64_t tile_index, int tile_size, int K, int S) {
  return first_covering_output(tile_index * tile_size, K, S);
}

// NCHW, phase 1: stage the dz region covering the input tile of plane (n, c).
template <int K, int S, typename scalar_t, typename acc_t>
SF_HD void nchw_stage_dz(const InputGradArgs<scalar_t, acc_t>& a, const InputGradPlan& p, const Unit& u,
                         acc_t* tile, int lane, int nlanes) {
  const Geo& g = a.geo;
  const acc_t* plane = a.dz + u.n * g.os[0] + u.c * g.os[1];
  const int64_t r0 = dz_origin(u.th, p.TH, K, S), c0 = dz_origin(u.tw, p.TW, K, S);
  const int total = p.dz_rows * p.dz_cols;
  for (int e = lane; e < total; e += nlanes) {
    const int r = e / p.dz_cols;
    const int q = e - r * p.dz_cols;
    const int64_t oh = r0 + r, ow = c0 + q;
    tile[e] = (oh >= 0 && oh < g.Ho && ow >= 0 && ow < g.Wo) ? plane[oh * g.os[2] + ow] : acc_t(0);
  }
}

// NCHW, phase 2 (one lane): elements lane, lane + nlanes, ... of the input tile.
template <int K, int S, typename scalar_t, typename acc_t>
SF_HD void nchw_input_grad_lane(const InputGradArgs<scalar_t, acc_t>& a, const InputGradPlan& p, const Unit& u,
                                const math::Taps<K * K, acc_t>& w, const acc_t* tile, int l, int nlanes) {
  const Geo& g = a.geo;
  const int64_t r0 = dz_origin(u.th, p.TH, K, S), c0 = dz_origin(u.tw, p.TW, K, S);
  scalar_t* plane = a.gx + u.n * g.xs[0] + u.c * g.xs[1];
  const int total = p.TH * p.TW;
  for (int e = l; e < total; e += nlanes) {
    const int r = e / p.TW;
    const int q = e - r * p.TW;
    const int64_t ih = u.th * p.TH + r, iw = u.tw * p.TW + q;
    if (ih >= g.H || iw >= g.W) continue;
    plane[ih * g.xs[2] + iw] = static_cast<scalar_t>(
        math::grad_input_gather<K, S>(tile, p.dz_cols, 1, r0, c0, ih, iw, g.Ho, g.Wo, w));
  }
}

// channels_last (one lane, channel c): the whole input tile, gathering dz from global memory.
template <int K, int S, typename scalar_t, typename acc_t>
SF_HD void cl_input_grad_lane(const InputGradArgs<scalar_t, acc_t>& a, const InputGradPlan& p, const Unit& u,
                              int64_t c, const math::Taps<K * K, acc_t>& w) {
  const Geo& g = a.geo;
  const acc_t* dz = a.dz + u.n * g.os[0] + c * g.os[1];
  scalar_t* out = a.gx + u.n * g.xs[0] + c * g.xs[1];
  for (int r = 0; r < p.TH; ++r) {
    const int64_t ih = u.th * p.TH + r;
    if (ih >= g.H) break;
    for (int q = 0; q < p.TW; ++q) {
      const int64_t iw = u.tw * p.TW + q;
      if (iw >= g.W) break;
      out[ih * g.xs[2] + iw * g.xs[3]] = static_cast<scalar_t>(
          math::grad_input_gather<K, S>(dz, g.os[2], g.os[3], 0, 0, ih, iw, g.Ho, g.Wo, w));
    }
  }
}

// ------------------------------------------------------- finalize passes ----

template <typename scalar_t, typename acc_t>
struct FinalizeArgs {
  const acc_t* part;  // [values x slots x C]
  int64_t slots, C, groups;
  int KK;
  bool shuffle_last;
  // Stats: mean/invstd out (per parameter channel) and the lane table folded
  // with the batch statistics for the Eval pass that writes y.
  double eps;
  const scalar_t* weight;
  const acc_t* gamma;  // may be null
  const acc_t* beta;   // may be null
  acc_t* mean_out;
  acc_t* invstd_out;
  acc_t* table;
  // GradStats: grad_bn_weight/bias and (training) the A, B, D table rows.
  const acc_t* invstd;
  double count;
  bool training;
  acc_t* grad_gamma;
  acc_t* grad_beta;
  // Weight gradient.
  scalar_t* grad_w;
};

SF_HD int64_t param_of_lane(int64_t C, int64_t groups, bool shuffle_last, int64_t c) {
  return ChannelMap(C, groups, shuffle_last).lane_of_input(c).param;
}

// One strand of a channel's slots: strand, strand + kFinalStrands, ... in order.
template <typename acc_t>
SF_HD double strand_sum(const acc_t* values, int64_t slots, int64_t C, int64_t c, int strand) {
  double s = 0.0;
  for (int64_t i = strand; i < slots; i += kFinalStrands) s += static_cast<double>(values[i * C + c]);
  return s;
}

// Moments, sweep 1: total count and sum of count * mean.
template <typename acc_t>
SF_HD void strand_count_sum(const acc_t* part, int64_t slots, int64_t C, int64_t c, int strand, double* count,
                            double* sum) {
  double n = 0.0, s = 0.0;
  for (int64_t i = strand; i < slots; i += kFinalStrands) {
    const double ni = static_cast<double>(part[i * C + c]);
    n += ni;
    s += ni * static_cast<double>(part[(slots + i) * C + c]);
  }
  *count = n;
  *sum = s;
}

// Moments, sweep 2: sum of m2_i + n_i * (mean_i - mean)^2, the exact pooled
// sum of squared deviations once the channel mean is known.
template <typename acc_t>
SF_HD double strand_m2(const acc_t* part, int64_t slots, int64_t C, int64_t c, int strand, double mean) {
  double s = 0.0;
  for (int64_t i = strand; i < slots; i += kFinalStrands) {
    const double ni = static_cast<double>(part[i * C + c]);
    const double d = static_cast<double>(part[(slots + i) * C + c]) - mean;
    s += static_cast<double>(part[(2 * slots + i) * C + c]) + ni * d * d;
  }
  return s;
}

template <typename scalar_t, typename acc_t>
SF_HD void finish_stats(const FinalizeArgs<scalar_t, acc_t>& a, int64_t c, double count, double mean, double m2) {
  const int64_t p = param_of_lane(a.C, a.groups, a.shuffle_last, c);
  const double invstd = invstd_from_moments(count, m2, a.eps);
  a.mean_out[p] = static_cast<acc_t>(mean);
  a.invstd_out[p] = static_cast<acc_t>(invstd);
  const double gamma = a.gamma ? static_cast<double>(a.gamma[p]) : 1.0;
  const double beta = a.beta ? static_cast<double>(a.beta[p]) : 0.0;
  const ScaleShift f = fold_batch_stats(mean, invstd, gamma, beta);
  for (int t = 0; t < a.KK; ++t)
    a.table[t * a.C + c] = static_cast<acc_t>(weight_at<scalar_t, acc_t>(a.weight, p * a.KK + t) * f.scale);
  a.table[(a.KK + kRowShift) * a.C + c] = static_cast<acc_t>(f.shift);
}

template <typename scalar_t, typename acc_t>
SF_HD void finish_grad_stats(const FinalizeArgs<scalar_t, acc_t>& a, int64_t c, double sum_g, double sum_gzc) {
  const int64_t p = param_of_lane(a.C, a.groups, a.shuffle_last, c);
  const double invstd = static_cast<double>(a.invstd[p]);
  const double gamma = a.gamma ? static_cast<double>(a.gamma[p]) : 1.0;
  a.grad_beta[p] = static_cast<acc_t>(sum_g);
  a.grad_gamma[p] = static_cast<acc_t>(sum_gzc * invstd);
  if (a.training) {
    const BnBackwardCoefs k = bn_backward_coefs(gamma, invstd, sum_g, sum_gzc, a.count, true);
    a.table[(a.KK + kRowA) * a.C + c] = static_cast<acc_t>(k.A);
    a.table[(a.KK + kRowB) * a.C + c] = static_cast<acc_t>(k.B);
    a.table[(a.KK + kRowD) * a.C + c] = static_cast<acc_t>(k.D);
  }
}

template <typename scalar_t, typename acc_t>
SF_HD void finish_weight_grad(const FinalizeArgs<scalar_t, acc_t>& a, int64_t c, int t, double total) {
  const int64_t p = param_of_lane(a.C, a.groups, a.shuffle_last, c);
  a.grad_w[p * a.KK + t] = static_cast<scalar_t>(static_cast<acc_t>(total));
}

}  // namespace work
}  // namespace shufflenet_fused
