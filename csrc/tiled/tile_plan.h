// How the tiled kernels split an op into warp work units: the geometry in the
// kernel's layout, the tile planners of the conv passes and of the grad_input
// pass, and the decoding of a unit index. Host planners, SF_HD decoders.
//
// Work decomposition (docs/cuda.md, "Tiling"):
//   NCHW           one warp = one (block of `planes` batch entries, lane
//                  channel c, output tile); the input tile + halo of each of
//                  those planes (n, c) is staged in shared memory; a lane
//                  computes chunks of kChunk outputs along W. Blocks of
//                  several planes exist where one tile covers a whole small
//                  plane (7x7, 14x14), so all lanes work and the unit's setup
//                  is shared.
//   channels_last  one warp = one (n, output tile, 32 consecutive channels);
//                  lane = channel, loads are 32 consecutive channels of one
//                  pixel; a lane walks the tile chunk by chunk.
// A lane channel is an *input* channel (common/channel_map.h): loads are
// contiguous and each lane's reductions belong to one parameter channel.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/channel_map.h"
#include "common/conv_geometry.h"
#include "common/host_device.h"
#include "tiled/conv_window.h"

namespace shufflenet_fused {
namespace tiled {

constexpr int kLanes = 32;
constexpr int kWarpsPerBlock = 8;
// Shared memory per warp of the NCHW kernels; 8 warps stay under the 48 KiB
// that needs no opt-in.
constexpr int kWarpSmemBytes = 6 * 1024;
// Below this many warp units a grid does not fill an H100 (132 SMs x 16
// warps); planners then trade per-lane work for more units.
constexpr int64_t kMinUnits = 2048;

// Shapes and element strides (n, c, h, w) of input-shaped tensors (x,
// grad_x) and output-shaped tensors (y, grad_output, dz) in the kernel's layout.
struct Geo {
  int64_t N, C, H, W, Ho, Wo;
  int K, S;
  int64_t groups;
  bool shuffle_last, channels_last;
  int64_t xs[4], os[4];

  SF_HD ChannelMap channel_map() const { return ChannelMap(C, groups, shuffle_last); }
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

// Output tiles of the conv passes (every TilePass).
struct TilePlan {
  int TH, TW, chunks_w;  // output tile of one unit; TW = chunks_w * kChunk
  int in_rows, pitch;    // NCHW: staged input tile (of one plane), pitch a multiple of 4
  int planes;            // NCHW: batch entries per unit (channels_last: 1)
  int smem_elems;        // NCHW: per warp, `planes` staged tiles
  int64_t tiles_h, tiles_w;
  int64_t channel_groups;  // NCHW: C; channels_last: ceil(C / 32)
  int64_t units;           // warp work units
  int64_t slots;           // partial slots per channel: ceil(N / planes) * tiles_h * tiles_w
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

// `block_min_units`: plane blocks are made only while the grid keeps this many
// units (kMinUnits on a GPU; the CPU test executors plan with 1, so small test
// shapes run plane blocks too).
inline TilePlan plan_nchw_tile(const Geo& g, int acc_bytes, int64_t block_min_units) {
  TilePlan p{};
  plan_tile_columns(g, 32, &p);
  p.pitch = (p.chunks_w - 1) * kChunk * g.S + padded_chunk_segment(g.K, g.S);
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
  // A tile that covers its whole plane: stack planes of the same channel up
  // to about 3 chunks per lane, within the shared memory and keeping the
  // grid at block_min_units units where it has that many.
  p.planes = 1;
  if (p.tiles_h * p.tiles_w == 1) {
    const int64_t chunks = static_cast<int64_t>(p.TH) * p.chunks_w;
    const int64_t tile_bytes = static_cast<int64_t>(p.in_rows) * p.pitch * acc_bytes;
    int64_t planes = std::min<int64_t>({g.N, std::max<int64_t>(1, 3 * kLanes / chunks), kWarpSmemBytes / tile_bytes});
    while (planes > 1 && div_up(g.N, planes) * g.C < block_min_units) --planes;
    p.planes = static_cast<int>(std::max<int64_t>(1, planes));
  }
  p.smem_elems = p.planes * p.in_rows * p.pitch;
  p.channel_groups = g.C;
  p.slots = div_up(g.N, p.planes) * p.tiles_h * p.tiles_w;
  p.units = p.slots * g.C;
  return p;
}

inline TilePlan plan_cl_tile(const Geo& g) {
  TilePlan p{};
  p.planes = 1;
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

inline TilePlan plan_tile(const Geo& g, int acc_bytes, int64_t block_min_units = kMinUnits) {
  return g.channels_last ? plan_cl_tile(g) : plan_nchw_tile(g, acc_bytes, block_min_units);
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

// The outputs covering `tile` consecutive inputs span at most this many rows
// (or columns), wherever the tile starts.
inline int covering_span(int tile, const Geo& g) {
  return static_cast<int>((tile - 1 + 2 * conv_pad(g.K)) / g.S + 1);
}

inline InputGradPlan plan_nchw_input_grad(const Geo& g, int acc_bytes) {
  InputGradPlan p{};
  int64_t tw, th;
  balance_tiles(g.W, 64, &tw, &p.tiles_w);
  p.TW = static_cast<int>(tw);
  p.dz_cols = covering_span(p.TW, g);
  int64_t target = 256 / p.TW;
  for (;;) {
    balance_tiles(g.H, target, &th, &p.tiles_h);
    p.TH = static_cast<int>(th);
    p.dz_rows = covering_span(p.TH, g);
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

inline InputGradPlan plan_input_grad(const Geo& g, int acc_bytes) {
  return g.channels_last ? plan_cl_input_grad(g) : plan_nchw_input_grad(g, acc_bytes);
}

// ----------------------------------------------------------------- units ----

struct Unit {
  int64_t n, c;  // n: the first batch entry; c: the lane channel (NCHW) or the first of 32 channels (channels_last)
  int64_t th, tw;
  int64_t slot;  // partial slot of this unit: (n / planes * tiles_h + th) * tiles_w + tw
  int planes;    // batch entries n .. n + planes - 1 (NCHW conv passes; else 1)
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
  t.planes = 1;
  return t;
}

// The NCHW conv passes: as decode_nchw_unit, with n counting blocks of
// p.planes batch entries (the last block may hold fewer).
SF_HD Unit decode_nchw_tile_unit(int64_t u, const TilePlan& p, int64_t N, int64_t C) {
  Unit t = decode_nchw_unit(u, p.tiles_h, p.tiles_w, C);
  t.n *= p.planes;
  const int64_t left = N - t.n;
  t.planes = left < p.planes ? static_cast<int>(left) : p.planes;
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
  t.planes = 1;
  return t;
}

}  // namespace tiled
}  // namespace shufflenet_fused
