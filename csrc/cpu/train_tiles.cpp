// The training forward of large NCHW planes, tile by tile (plane_tiles.h).
// Tasks are parameter channels, as in the untiled forward (train.h): each
// channel's statistics are reduced by one thread in a fixed order, so the
// result does not depend on the thread count. A channel's conv is computed
// twice, tile by tile: for its statistics, and for the normalised output;
// each tile's conv runs in the statistics' precision (float32, or float64 for
// float64 input).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_tiles.h"
#include "cpu/reused_tensor.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// sum((z - mean)^2) over a tile, in double, through a per-thread buffer
// (ATen's reductions are vectorised for the machine; this file is not).
double squared_deviations(const at::Tensor& z, double mean) {
  thread_local at::Tensor buffer;
  at::Tensor d = reused_tensor(buffer, z.sizes(), z.options());
  return at::sub_out(d, z, mean).square_().sum(at::kDouble).item<double>();
}

}  // namespace

void train_in_tiles(const TrainParams& P) {
  const ConvGeometry& g = P.g;
  const PlaneTiles tiles(g);
  const int64_t KK = g.K * g.K;
  const double count = static_cast<double>(g.N * g.Ho * g.Wo);
  const ChannelMap map(g.C, P.groups, P.shuffle_last);
  const at::ScalarType acc = stat_dtype(P.x.scalar_type());
  at::parallel_for(0, g.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const LaneChannels lane = map.lane_of_param(c);
      const double* taps = P.weight.data() + c * KK;
      // One conv pass for the statistics: each tile's sum and squared
      // deviations from its own mean (passes over the tile, in cache),
      // combined as m2 = sum over tiles of m2_t + n_t * (mean_t - mean)^2,
      // mean being the sum over all tiles / count, as in the untiled forward.
      std::vector<Moments<double>> parts;
      parts.reserve(g.N * tiles.count());
      double sum = 0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t i = 0; i < tiles.count(); ++i) {
          const at::Tensor z = conv_tile(P.x, n, lane.input, g, tile_of(tiles, g, i), taps, 1.0, 0.0, acc);
          const double part_sum = z.sum(at::kDouble).item<double>(), part_n = static_cast<double>(z.numel());
          sum += part_sum;
          parts.push_back({part_n, part_sum / part_n, squared_deviations(z, part_sum / part_n)});
        }
      const double mean = sum / count;
      double m2 = 0;
      for (const Moments<double>& p : parts) m2 += p.m2 + p.n * (p.mean - mean) * (p.mean - mean);
      const double invstd = invstd_from_moments(count, m2, P.eps);
      P.mean.select(0, c).fill_(mean);
      P.invstd.select(0, c).fill_(invstd);
      // The output: BN folded into the tiles' conv where that keeps the NaN/Inf
      // pattern (a finite scale and shift), else applied after it.
      const ScaleShift bn = fold_batch_stats(mean, invstd, P.gamma[c], P.beta[c]);
      const bool fold = bn.foldable();
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t i = 0; i < tiles.count(); ++i) {
          const Tile t = tile_of(tiles, g, i);
          at::Tensor z = conv_tile(P.x, n, lane.input, g, t, taps, fold ? bn.scale : 1.0, fold ? bn.shift : 0.0, acc);
          if (!fold) z.mul_(bn.scale).add_(bn.shift);
          P.y.select(0, n).select(0, lane.output).slice(0, t.o0, t.o1).slice(1, t.w0, t.w1).copy_(z);
        }
    }
  });
}

}  // namespace cpu
}  // namespace shufflenet_fused
