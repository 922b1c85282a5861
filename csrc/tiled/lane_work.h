// The work of one warp and one lane in the conv passes and the grad_input
// pass of the tiled kernels, device-agnostic.
//
// A kernel in csrc/cuda/kernels.cuh is a thin loop: decode the work unit
// (tiled/tile_plan.h), call the phase functions below, synchronise or shuffle
// between phases. The CPU emulator (tiled/emulator_test_ops.cpp) runs the
// same phase functions over all units and lanes in plain loops, so everything
// that decides *which* element goes where (tiles, halos, borders, partial
// slots, the channel map, the BN formulas) is exercised by the CPU tests. Only
// the vector loads, the shuffles and the barriers are CUDA-only.
//
// Per-channel reductions: every unit writes one partial per lane channel into
// slot (n, tile); the finalize passes (tiled/finalize.h) add the slots of a
// channel in a fixed order. No atomics anywhere.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/conv_geometry.h"
#include "common/host_device.h"
#include "tiled/conv_window.h"
#include "tiled/lane_table.h"
#include "tiled/tile_plan.h"

namespace shufflenet_fused {
namespace tiled {

// What a conv pass does with the conv output z of each lane. (The output
// pass y = conv * scale + shift is tiled/walk_eval.h.)
enum class TilePass : int {
  Stats,      // partial moments of z (training forward, pass 1)
  GradStats,  // partial sum(g), sum(g * (z - mean)) (backward, pass 1)
  Dz,         // write dz = BN backward(g); partial weight gradient (backward, pass 2)
};

// ------------------------------------------------------------ conv passes ----

template <typename scalar_t, typename acc_t>
struct TileArgs {
  const scalar_t* x;   // input
  const scalar_t* g;   // grad_output (GradStats, Dz)
  scalar_t* y;         // output (the eval pass, tiled/walk_eval.h)
  acc_t* dz;           // Dz: BN-backward output, output-shaped, at the *lane* channel
  const acc_t* table;  // lane table
  // Partials [values x slots x C]: Stats (n, mean, m2), GradStats (sum_g,
  // sum_gzc), Dz (the K*K weight-gradient taps).
  acc_t* part;
  acc_t* part_g;  // Dz: sum_g, sum_gzc partials as well (frozen statistics); may be null
  bool training;  // Dz: batch statistics (false: frozen, eval BN)
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
template <TilePass P, int KK, typename acc_t>
struct LaneAcc;

template <int KK, typename acc_t>
struct LaneAcc<TilePass::Stats, KK, acc_t> {
  using Partial = Moments<acc_t>;
  ShiftedSums<acc_t> sums;
  SF_HD Partial partial() const { return sums.moments(); }
};

template <int KK, typename acc_t>
struct LaneAcc<TilePass::GradStats, KK, acc_t> {
  using Partial = Sums<2, acc_t>;
  acc_t sg = acc_t(0), sgz = acc_t(0);
  SF_HD Partial partial() const { return Partial{{sg, sgz}}; }
};

template <int KK, typename acc_t>
struct LaneAcc<TilePass::Dz, KK, acc_t> {
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
template <TilePass P, int KK, typename scalar_t, typename acc_t>
SF_HD void write_partial(const TileArgs<scalar_t, acc_t>& a, int64_t slots, int64_t slot, int64_t c,
                         const typename LaneAcc<P, KK, acc_t>::Partial& p) {
  const int64_t C = a.geo.C;
  const int64_t at = slot * C + c, step = slots * C;
  if constexpr (P == TilePass::Stats) {
    a.part[at] = p.n;
    a.part[at + step] = p.mean;
    a.part[at + 2 * step] = p.m2;
  } else if constexpr (P == TilePass::GradStats) {
    a.part[at] = p.v[0];
    a.part[at + step] = p.v[1];
  } else if constexpr (P == TilePass::Dz) {
    for (int t = 0; t < KK; ++t) a.part[at + t * step] = p.v[t];
    if (a.part_g) {
      a.part_g[at] = p.v[KK];
      a.part_g[at + step] = p.v[KK + 1];
    }
  }
}

// Everything one chunk does after its conv outputs z are known.
template <TilePass P, int K, int S, typename scalar_t, typename acc_t, typename Rows>
SF_HD void chunk_epilogue(const TileArgs<scalar_t, acc_t>& a, const LaneChannels& lane,
                          const LaneCoefs<K * K, acc_t>& lc, int64_t n, int64_t oh, int64_t ow0, int nvalid,
                          const Rows& rows, const acc_t (&z)[kChunk], LaneAcc<P, K * K, acc_t>& acc) {
  const Geo& g = a.geo;
  if constexpr (P == TilePass::Stats) {
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
    if constexpr (P == TilePass::Dz) {
      acc_t d[kChunk];
      SF_UNROLL
      for (int v = 0; v < kChunk; ++v)
        d[v] = v < nvalid ? bn_backward_dz(lc.A, lc.B, lc.D, gv[v], z[v] - lc.mean, a.training) : acc_t(0);
      acc_t* dzo = a.dz + n * g.os[0] + lane.input * g.os[1] + oh * g.os[2] + ow0 * g.os[3];
      SF_UNROLL
      for (int v = 0; v < kChunk; ++v)
        if (v < nvalid) dzo[v * g.os[3]] = d[v];
      if constexpr (K >= 5 && std::is_same<Rows, TileRows<acc_t>>::value) {
        const TileRowsReloaded<acc_t> reload{rows.origin, rows.pitch};
        accumulate_weight_grad_chunk<K, S>(reload, d, acc.gw);
      } else {
        accumulate_weight_grad_chunk<K, S>(rows, d, acc.gw);
      }
    }
  }
}

SF_HD int valid_in_chunk(int64_t Wo, int64_t ow0) {
  return Wo - ow0 < kChunk ? static_cast<int>(Wo - ow0) : kChunk;
}

// NCHW, phase 1 (all lanes): stage the input tile + halo of each of the
// unit's planes as acc_t, zeros outside the image, so phase 2 runs without
// border checks. The planes are staged one after the other, in_rows * pitch
// apart. Lane l stages elements l, l + nlanes, ... of each row-major tile,
// walking (row, column) and the element's offset in the plane by a fixed step
// instead of dividing each element index by the pitch; one unsigned compare
// per axis tests the image border (a coordinate before it wraps to a large
// value). Offsets within the plane are `index_t`: 32-bit when the plane (halo
// rows included) has fewer than 2^31 elements, so the loop has no 64-bit
// arithmetic. (One walk over all planes' rows, wrapping from plane to plane,
// counted more instructions per element than this loop per plane.)

// Where lane l starts in a tile of rows `pitch` long, and its step.
struct TileWalk {
  int r0, q0, step_r, step_q;
  SF_HD TileWalk(int lane, int nlanes, int pitch)
      : r0(lane / pitch), q0(lane % pitch), step_r(nlanes / pitch), step_q(nlanes % pitch) {}
};

template <typename index_t, typename scalar_t, typename acc_t>
SF_HD void stage_planes_walk(const scalar_t* x, int64_t plane_pitch, int planes, index_t H, index_t W,
                             index_t row_pitch, index_t ih0, index_t iw0, int total, int pitch, const TileWalk& walk,
                             acc_t* tile, int lane, int nlanes) {
  using uindex_t = typename std::make_unsigned<index_t>::type;
  const index_t step_off = walk.step_r * row_pitch + walk.step_q, wrap_off = row_pitch - pitch;
  for (int b = 0; b < planes; ++b) {
    const scalar_t* plane = x + b * plane_pitch;
    acc_t* out = tile + b * total;
    int q = walk.q0;
    index_t ih = ih0 + walk.r0;
    index_t off = ih * row_pitch + iw0 + q;
    for (int e = lane; e < total; e += nlanes) {
      const bool inside = static_cast<uindex_t>(ih) < static_cast<uindex_t>(H) &&
                          static_cast<uindex_t>(iw0 + q) < static_cast<uindex_t>(W);
      out[e] = inside ? static_cast<acc_t>(plane[off]) : acc_t(0);
      q += walk.step_q;
      ih += walk.step_r;
      off += step_off;
      if (q >= pitch) {
        q -= pitch;
        ++ih;
        off += wrap_off;
      }
    }
  }
}

template <int K, int S, typename scalar_t, typename acc_t>
SF_HD void nchw_stage_input(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p, const Unit& u, acc_t* tile,
                            int lane, int nlanes) {
  const Geo& g = a.geo;
  const scalar_t* first = a.x + u.n * g.xs[0] + u.c * g.xs[1];
  const int64_t ih0 = window_start(u.th * p.TH, K, S), iw0 = window_start(u.tw * p.TW, K, S);
  const int total = p.in_rows * p.pitch;
  const TileWalk walk(lane, nlanes, p.pitch);
  // The walk's offsets reach from a halo row above the plane to one below it.
  if ((g.H + 2 * K) * g.xs[2] < (int64_t(1) << 31)) {
    stage_planes_walk<int32_t>(first, g.xs[0], u.planes, static_cast<int32_t>(g.H), static_cast<int32_t>(g.W),
                               static_cast<int32_t>(g.xs[2]), static_cast<int32_t>(ih0), static_cast<int32_t>(iw0),
                               total, p.pitch, walk, tile, lane, nlanes);
  } else {
    stage_planes_walk<int64_t>(first, g.xs[0], u.planes, g.H, g.W, g.xs[2], ih0, iw0, total, p.pitch, walk, tile,
                               lane, nlanes);
  }
}

// NCHW, phase 2 (one lane): chunks lane, lane + nlanes, ... of the unit's
// planes, chunk (b, r, j) being chunk j of row r of plane b. The lane walks
// (b, r, j) by a fixed step, as the staging walks its elements.
template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
SF_HD void nchw_lane_work(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p, const Unit& u,
                          const LaneChannels& lane, const LaneCoefs<K * K, acc_t>& lc, const acc_t* tile,
                          int l, int nlanes, LaneAcc<P, K * K, acc_t>& acc) {
  const Geo& g = a.geo;
  const int chunks = u.planes * p.TH * p.chunks_w;
  const int step_rows = nlanes / p.chunks_w, step_j = nlanes - step_rows * p.chunks_w;
  int j = l % p.chunks_w, r = l / p.chunks_w, b = r / p.TH;
  r -= b * p.TH;
  for (int q = l; q < chunks; q += nlanes) {
    const int64_t oh = u.th * p.TH + r;
    const int64_t ow0 = u.tw * p.TW + j * kChunk;
    if (oh < g.Ho && ow0 < g.Wo) {
      const TileRows<acc_t> rows{tile + (b * p.in_rows + r * S) * p.pitch + j * kChunk * S, p.pitch};
      acc_t z[kChunk];
      conv_chunk<K, S>(rows, lc.w, z);
      chunk_epilogue<P, K, S>(a, lane, lc, u.n + b, oh, ow0, valid_in_chunk(g.Wo, ow0), rows, z, acc);
    }
    j += step_j;
    r += step_rows;
    if (j >= p.chunks_w) {
      j -= p.chunks_w;
      ++r;
    }
    while (r >= p.TH) {
      r -= p.TH;
      ++b;
    }
  }
}

// channels_last (one lane, channel lane.input): the whole tile, chunk by chunk.
template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
SF_HD void cl_lane_work(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p, const Unit& u,
                        const LaneChannels& lane, const LaneCoefs<K * K, acc_t>& lc,
                        LaneAcc<P, K * K, acc_t>& acc) {
  const Geo& g = a.geo;
  const scalar_t* image = a.x + u.n * g.xs[0] + lane.input * g.xs[1];
  for (int r = 0; r < p.TH; ++r) {
    const int64_t oh = u.th * p.TH + r;
    if (oh >= g.Ho) break;
    for (int j = 0; j < p.chunks_w; ++j) {
      const int64_t ow0 = u.tw * p.TW + j * kChunk;
      if (ow0 >= g.Wo) break;
      const GlobalRows<K, S, scalar_t, acc_t> rows{
          image, g.xs[2], g.xs[3], g.H, g.W, window_start(oh, K, S), window_start(ow0, K, S)};
      acc_t z[kChunk];
      conv_chunk<K, S>(rows, lc.w, z);
      chunk_epilogue<P, K, S>(a, lane, lc, u.n, oh, ow0, valid_in_chunk(g.Wo, ow0), rows, z, acc);
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
                                const Taps<K * K, acc_t>& w, const acc_t* tile, int l, int nlanes) {
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
        grad_input_gather<K, S>(tile, p.dz_cols, 1, r0, c0, ih, iw, g.Ho, g.Wo, w));
  }
}

// channels_last (one lane, channel c): the whole input tile, gathering dz from global memory.
template <int K, int S, typename scalar_t, typename acc_t>
SF_HD void cl_input_grad_lane(const InputGradArgs<scalar_t, acc_t>& a, const InputGradPlan& p, const Unit& u,
                              int64_t c, const Taps<K * K, acc_t>& w) {
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
          grad_input_gather<K, S>(dz, g.os[2], g.os[3], 0, 0, ih, iw, g.Ho, g.Wo, w));
    }
  }
}

}  // namespace tiled
}  // namespace shufflenet_fused
