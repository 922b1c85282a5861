// The tile machinery of plane_tiles.h and the tiled eval: tasks are (batch
// entry, output channel, tile), each the ISA's eval kernel on one input window.
#include "cpu/plane_tiles.h"

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

at::Tensor conv_tile(const at::Tensor& x, int64_t n, int64_t plane, const ConvGeometry& g, const Tile& t,
                     const double* taps, double scale, double shift, at::ScalarType dtype) {
  const InputSpan rows = input_span(t.o0, t.o1, g.K, g.stride, g.H);
  const InputSpan cols = input_span(t.w0, t.w1, g.K, g.stride, g.W);
  ConvGeometry wg = g;  // the window as a plane of its own
  wg.N = wg.C = 1;
  wg.H = rows.end - rows.begin;
  wg.W = cols.end - cols.begin;
  wg.Ho = conv_out_size(wg.H, g.K, g.stride);
  wg.Wo = conv_out_size(wg.W, g.K, g.stride);
  const at::TensorOptions options = x.options().dtype(dtype).memory_format(at::MemoryFormat::Contiguous);
  at::Tensor window = x.select(0, n).select(0, plane).slice(0, rows.begin, rows.end).slice(1, cols.begin, cols.end);
  window = window.is_contiguous() && x.scalar_type() == dtype ? window.view({1, 1, wg.H, wg.W})
                                                              : tile_buffer(0, wg.H, wg.W, options).copy_(window);
  at::Tensor y = tile_buffer(1, wg.Ho, wg.Wo, options);
  const std::vector<double> weight(taps, taps + g.K * g.K), scales{scale}, shifts{shift};
  active_kernels().eval(EvalParams{window, weight, scales, shifts, wg, 1, false, y});
  const int64_t r = rows.begin / g.stride, c = cols.begin / g.stride;
  return y.select(0, 0).select(0, 0).slice(0, t.o0 - r, t.o1 - r).slice(1, t.w0 - c, t.w1 - c);
}

void eval_in_tiles(const EvalParams& P) {
  const ConvGeometry& g = P.g;
  const PlaneTiles tiles(g);
  const int64_t KK = g.K * g.K;
  const ChannelMap map(g.C, P.groups, P.shuffle_last);
  at::parallel_for(0, g.N * g.C * tiles.count(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / (g.C * tiles.count()), o = task / tiles.count() % g.C;
      const Tile t = tile_of(tiles, g, task % tiles.count());
      const LaneChannels lane = map.lane_of_output(o);
      const at::Tensor y = conv_tile(P.x, n, lane.input, g, t, P.weight.data() + lane.param * KK,
                                     P.scale[lane.param], P.shift[lane.param], P.x.scalar_type());
      P.y.select(0, n).select(0, o).slice(0, t.o0, t.o1).slice(1, t.w0, t.w1).copy_(y);
    }
  });
}

}  // namespace cpu
}  // namespace shufflenet_fused
