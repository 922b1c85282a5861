// Eval of large NCHW planes tile by tile, so that the memory a thread works
// in does not grow with the plane: the kernels would otherwise stage or plan
// whole planes (flat_stack.h pads a copy of each plane; the AVX-512 windowed
// kernels keep K*K/8 bytes of lane masks per pixel).
//
// An output tile (rows [o0, o1), columns [w0, w1) of one output plane) is
// computed as the whole conv of the input window it reads, halo included:
// that window is a plane of its own to the kernels, whose zero padding falls
// only where the window ends at the image's border, and the tile is the part
// of that conv's output the window fully covers. Every output is the same
// sum of the same products as in the whole-plane conv.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/checks.h"
#include "common/conv_geometry.h"
#include "cpu/kernel_table.h"

namespace shufflenet_fused {
namespace cpu {

// NCHW input planes of more pixels than this run in tiles.
constexpr int64_t kTiledAbovePixels = int64_t(1) << 19;
// Output pixels per tile (512 KB of float32: the kernels' buffers stay in L2).
constexpr int64_t kTilePixels = int64_t(1) << 17;
// Output rows wider than this are cut into tiles of kTileColumns columns
// (then the input window is copied: it is not contiguous).
constexpr int64_t kMaxBandColumns = int64_t(1) << 14;
constexpr int64_t kTileColumns = int64_t(1) << 12;

inline bool eval_runs_in_tiles(const ConvGeometry& g) { return g.H * g.W > kTiledAbovePixels; }

// Output rows and columns per tile.
struct TileShape {
  int64_t rows, cols;
};

inline TileShape eval_tile_shape(const ConvGeometry& g) {
  const int64_t cols = g.Wo <= kMaxBandColumns ? g.Wo : kTileColumns;
  return {std::min(g.Ho, std::max<int64_t>(1, kTilePixels / cols)), cols};
}

// Input coordinates [begin, end) along one axis that outputs [o0, o1) read.
// begin is a multiple of the stride, so that output o of the window's own
// conv is output o + begin / stride of the image's.
struct InputSpan {
  int64_t begin, end;
};

inline InputSpan input_span(int64_t o0, int64_t o1, int64_t K, int64_t S, int64_t in) {
  int64_t begin = std::max<int64_t>(0, window_start(o0, K, S));
  begin -= begin % S;
  return {begin, std::min(in, window_start(o1 - 1, K, S) + K)};
}

// The NCHW eval of P (eval_runs_in_tiles(P.g)) through the active ISA's eval
// kernel, tile by tile.
void eval_in_tiles(const EvalParams& P);

}  // namespace cpu
}  // namespace shufflenet_fused
