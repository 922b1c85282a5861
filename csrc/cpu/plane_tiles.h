// Large NCHW planes tile by tile (the eval and the training forward), so that
// the memory a thread works in does not grow with the plane: the kernels
// would otherwise stage or plan whole planes (flat_stack.h pads a copy of each
// plane; the AVX-512 windowed kernels keep K*K/8 bytes of lane masks per
// pixel), and the training forward would keep a channel's conv output.
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

inline bool runs_in_tiles(const ConvGeometry& g) { return g.H * g.W > kTiledAbovePixels; }

// The training forward runs in tiles where its untiled kernels (train.h)
// would need more than about 24 MB per thread: planes above 2^21 pixels
// (staging, lane masks), or half-type input whose channel's conv output, kept
// in float32 for the statistics, would pass 16 MB. Tiles compute each conv
// twice: up to about 3M pixels the untiled kernels are faster (1.4-2.4x at
// 1500x1500), above it slower (their AVX-512 lane plans stop being kept
// between calls; 2048x2048: 0.6x).
constexpr int64_t kTrainTiledAbovePixels = int64_t(1) << 21;
constexpr int64_t kTrainMaxChannelBytes = int64_t(16) << 20;

inline bool train_runs_in_tiles(const ConvGeometry& g, at::ScalarType dtype) {
  const bool half = dtype == at::kHalf || dtype == at::kBFloat16;
  return g.H * g.W > kTrainTiledAbovePixels ||
         (half && g.N * g.Ho * g.Wo * int64_t(sizeof(float)) > kTrainMaxChannelBytes);
}

// The backward runs in tiles on the training forward's planes, and where its
// untiled kernel's copies of a channel's conv output and its gradient (z and
// dz, in the statistics' type) would pass 64 MB together. Tiles cost a second
// conv but keep their buffers in cache: 0.5-0.8x the untiled time on planes
// from 1448x1448 up (1.3x at 1500x1500, k = 3), 0.8-1.2x on batches just
// above the 64 MB, 2-3x on batches of planes of 128x128 and smaller.
constexpr int64_t kBackwardMaxChannelBytes = int64_t(64) << 20;

inline bool backward_runs_in_tiles(const ConvGeometry& g, at::ScalarType dtype) {
  const int64_t acc_bytes = stat_dtype(dtype) == at::kDouble ? 8 : 4;
  return g.H * g.W > kTrainTiledAbovePixels || 2 * g.N * g.Ho * g.Wo * acc_bytes > kBackwardMaxChannelBytes;
}

// Output rows and columns per tile.
struct TileShape {
  int64_t rows, cols;
};

inline TileShape tile_shape(const ConvGeometry& g) {
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

// The tiles of one output plane, row-major.
struct PlaneTiles {
  TileShape shape;
  int64_t row_tiles, col_tiles;

  explicit PlaneTiles(const ConvGeometry& g)
      : shape(tile_shape(g)),
        row_tiles((g.Ho + shape.rows - 1) / shape.rows),
        col_tiles((g.Wo + shape.cols - 1) / shape.cols) {}
  int64_t count() const { return row_tiles * col_tiles; }
};

// Output rows [o0, o1) and columns [w0, w1) of a plane.
struct Tile {
  int64_t o0, o1, w0, w1;
};

inline Tile tile_of(const PlaneTiles& t, const ConvGeometry& g, int64_t i) {
  const int64_t o0 = i / t.col_tiles * t.shape.rows, w0 = i % t.col_tiles * t.shape.cols;
  return {o0, std::min(g.Ho, o0 + t.shape.rows), w0, std::min(g.Wo, w0 + t.shape.cols)};
}

// conv(input plane `plane` of image n of x, taps) * scale + shift at one
// tile, through the active ISA's eval kernel on the tile's input window, in
// `dtype` (the window is converted to it first when x has another). Returns
// the tile (o1 - o0, w1 - w0), a view of a per-thread buffer that the next
// call on this thread overwrites.
at::Tensor conv_tile(const at::Tensor& x, int64_t n, int64_t plane, const ConvGeometry& g, const Tile& t,
                     const double* taps, double scale, double shift, at::ScalarType dtype);

// The NCHW eval of P (runs_in_tiles(P.g)), tile by tile.
void eval_in_tiles(const EvalParams& P);

// The NCHW training forward of P (train_runs_in_tiles), tile by tile: each
// channel's conv computed twice (the statistics, the output), so that no
// buffer of the channel's planes is needed.
void train_in_tiles(const TrainParams& P);

// The NCHW backward of P (backward_runs_in_tiles), tile by tile
// (backward_tiles.cpp): each channel's conv computed twice in training
// (the sums, then dz), once with frozen statistics.
void backward_in_tiles(const BackwardParams& P);

}  // namespace cpu
}  // namespace shufflenet_fused
