// The tiled NCHW eval (eval_tiles.h): tasks are (batch entry, output channel,
// tile), each the ISA's eval kernel on one input window.
#include "cpu/eval_tiles.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <array>
#include <vector>

#include "common/channel_map.h"
#include "cpu/kernel_table.h"
#include "cpu/reused_tensor.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// Per-thread buffers of one tile (the copied input window, the window's
// output), kept between tasks and calls; a tile's size is bounded, so these are too.
at::Tensor tile_buffer(int slot, int64_t rows, int64_t cols, const at::TensorOptions& options) {
  thread_local std::array<at::Tensor, 2> cache;
  return reused_tensor(cache[slot], {1, 1, rows, cols}, options);
}

}  // namespace

void eval_in_tiles(const EvalParams& P) {
  const ConvGeometry& g = P.g;
  const TileShape shape = eval_tile_shape(g);
  const int64_t row_tiles = (g.Ho + shape.rows - 1) / shape.rows;
  const int64_t col_tiles = (g.Wo + shape.cols - 1) / shape.cols;
  const int64_t tiles = row_tiles * col_tiles, KK = g.K * g.K;
  const ChannelMap map(g.C, P.groups, P.shuffle_last);
  const at::TensorOptions options = P.x.options().memory_format(at::MemoryFormat::Contiguous);
  at::parallel_for(0, g.N * g.C * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (g.C * tiles), o = task / tiles % g.C, tile = task % tiles;
      const int64_t o0 = tile / col_tiles * shape.rows, o1 = std::min(g.Ho, o0 + shape.rows);
      const int64_t w0 = tile % col_tiles * shape.cols, w1 = std::min(g.Wo, w0 + shape.cols);
      const InputSpan rows = input_span(o0, o1, g.K, g.stride, g.H);
      const InputSpan cols = input_span(w0, w1, g.K, g.stride, g.W);
      const LaneChannels lane = map.lane_of_output(o);

      ConvGeometry wg = g;  // the window as a plane of its own
      wg.N = wg.C = 1;
      wg.H = rows.end - rows.begin;
      wg.W = cols.end - cols.begin;
      wg.Ho = conv_out_size(wg.H, g.K, g.stride);
      wg.Wo = conv_out_size(wg.W, g.K, g.stride);
      at::Tensor x = P.x.select(0, n).select(0, lane.input).slice(0, rows.begin, rows.end).slice(1, cols.begin, cols.end);
      x = x.is_contiguous() ? x.view({1, 1, wg.H, wg.W}) : tile_buffer(0, wg.H, wg.W, options).copy_(x);
      at::Tensor y = tile_buffer(1, wg.Ho, wg.Wo, options);
      const std::vector<double> weight(P.weight.begin() + lane.param * KK, P.weight.begin() + (lane.param + 1) * KK);
      const std::vector<double> scale{P.scale[lane.param]}, shift{P.shift[lane.param]};
      active_kernels().eval(EvalParams{x, weight, scale, shift, wg, 1, false, y});

      const int64_t r = rows.begin / g.stride, c = cols.begin / g.stride;
      P.y.select(0, n).select(0, o).slice(0, o0, o1).slice(1, w0, w1).copy_(
          y.select(0, 0).select(0, 0).slice(0, o0 - r, o1 - r).slice(1, w0 - c, w1 - c));
    }
  });
}

}  // namespace cpu
}  // namespace shufflenet_fused
