// Test-only ops: the CUDA backend's algorithm, run on the CPU. Built only with
// SHUFFLENET_FUSED_TEST_OPS=1.
//
// There may be no GPU where the tests run, so the CUDA kernels' per-element
// logic is checked here: EmuExec executes the lane work of csrc/tiled/
// (staging, windows, borders, the channel map, partial slots, warp and strand
// reduction orders, BN folding and backward coefficients) unit by unit and
// lane by lane, driven by the same pass sequence (tiled/pipeline.h) as the
// CUDA executor. The CUDA syntax around them (threads, shuffles, barriers,
// 16-byte loads) is what the host runner (csrc/cuda/host/) executes. All four
// dtypes; outputs and workspaces are filled with NaN first, so an element no
// unit writes shows up in the tests.
//
//   _debug_emulate_eval / _train / _backward   same schemas as the real ops
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "common/channel_map.h"
#include "common/checks.h"
#include "tiled/conv_window.h"
#include "tiled/finalize.h"
#include "tiled/lane_table.h"
#include "tiled/lane_work.h"
#include "tiled/cpu_executor_ops.h"
#include "tiled/pipeline.h"
#include "tiled/tile_plan.h"
#include "tiled/walk_eval.h"

namespace shufflenet_fused {
namespace tiled {
namespace {

// The kernels' shuffle-down tree: lane 0 ends with the combined value.
template <typename P>
P warp_tree(std::vector<P>& lanes) {
  for (int offset = kLanes / 2; offset > 0; offset >>= 1)
    for (int l = 0; l < offset; ++l) lanes[l] = combine(lanes[l], lanes[l + offset]);
  return lanes[0];
}

// The finalize kernels' strand tree.
double strand_tree(std::vector<double> red) {
  for (int stride = kFinalStrands / 2; stride > 0; stride >>= 1)
    for (int ty = 0; ty < stride; ++ty) red[ty] += red[ty + stride];
  return red[0];
}

struct EmuExec {
  // Plane blocks wherever a tile covers its plane (a GPU plans them only for
  // large grids), so the small test shapes run them.
  static constexpr int64_t kBlockMinUnits = 1;
  static constexpr int64_t kWalkMinUnits = 1;  // whole planes per unit (the host runner splits them)
  void fresh(at::Tensor& t) { t.fill_(std::numeric_limits<double>::quiet_NaN()); }

  template <typename scalar_t, typename acc_t>
  void prep(Prep kind, const PrepArgs<scalar_t, acc_t>& a) {
    for (int64_t c = 0; c < a.C; ++c) prep_lane(kind, a, c);
  }

  template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
  void tile(const TileArgs<scalar_t, acc_t>& a, const TilePlan& p) {
    using Acc = LaneAcc<P, K * K, acc_t>;
    const ChannelMap map = a.geo.channel_map();
    std::vector<typename Acc::Partial> lane_partials(kLanes);
    std::vector<acc_t> tile(a.geo.channels_last ? 0 : p.smem_elems);
    for (int64_t u = 0; u < p.units; ++u) {
      if (a.geo.channels_last) {
        const Unit unit = decode_cl_unit(u, p.tiles_h, p.tiles_w, p.channel_groups);
        for (int lane = 0; lane < kLanes; ++lane) {
          const int64_t c = unit.c + lane;
          if (c >= a.geo.C) continue;
          LaneCoefs<K * K, acc_t> coefs;
          load_lane_coefs(a.table, a.geo.C, c, coefs);
          Acc acc;
          cl_lane_work<P, K, S>(a, p, unit, map.lane_of_input(c), coefs, acc);
          write_partial<P, K * K>(a, p.slots, unit.slot, c, acc.partial());
        }
      } else {
        const Unit unit = decode_nchw_tile_unit(u, p, a.geo.N, a.geo.C);
        std::fill(tile.begin(), tile.end(), std::numeric_limits<acc_t>::quiet_NaN());
        for (int lane = 0; lane < kLanes; ++lane) nchw_stage_input<K, S>(a, p, unit, tile.data(), lane, kLanes);
        LaneCoefs<K * K, acc_t> coefs;
        load_lane_coefs(a.table, a.geo.C, unit.c, coefs);
        const LaneChannels channels = map.lane_of_input(unit.c);
        for (int lane = 0; lane < kLanes; ++lane) {
          Acc acc;
          nchw_lane_work<P, K, S>(a, p, unit, channels, coefs, tile.data(), lane, kLanes, acc);
          lane_partials[lane] = acc.partial();
        }
        write_partial<P, K * K>(a, p.slots, unit.slot, unit.c, warp_tree(lane_partials));
      }
    }
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void walk_eval(const TileArgs<scalar_t, acc_t>& a, const WalkPlan& p) {
    dispatch_walk(a.geo, p, [&](auto channels_last, auto index) {
      for (int64_t strip = 0; strip < p.strips; ++strip)
        for (int64_t row_chunk = 0; row_chunk < p.row_chunks; ++row_chunk)
          for (int64_t b = 0; b < p.blocks; ++b)
            for (int lane = 0; lane < kLanes; ++lane)
              walk_lane<decltype(channels_last)::value, decltype(index), K, S>(a, p, b, row_chunk, strip, lane);
    });
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void input_grad(const InputGradArgs<scalar_t, acc_t>& a, const InputGradPlan& p) {
    std::vector<acc_t> tile(a.geo.channels_last ? 0 : p.smem_elems);
    Taps<K * K, acc_t> w;
    for (int64_t u = 0; u < p.units; ++u) {
      if (a.geo.channels_last) {
        const Unit unit = decode_cl_unit(u, p.tiles_h, p.tiles_w, p.channel_groups);
        for (int lane = 0; lane < kLanes; ++lane) {
          const int64_t c = unit.c + lane;
          if (c >= a.geo.C) continue;
          w.load(a.table + c, a.geo.C);
          cl_input_grad_lane<K, S>(a, p, unit, c, w);
        }
      } else {
        const Unit unit = decode_nchw_unit(u, p.tiles_h, p.tiles_w, a.geo.C);
        std::fill(tile.begin(), tile.end(), std::numeric_limits<acc_t>::quiet_NaN());
        for (int lane = 0; lane < kLanes; ++lane) nchw_stage_dz<K, S>(a, p, unit, tile.data(), lane, kLanes);
        w.load(a.table + unit.c, a.geo.C);
        for (int lane = 0; lane < kLanes; ++lane)
          nchw_input_grad_lane<K, S>(a, p, unit, w, tile.data(), lane, kLanes);
      }
    }
  }

  template <typename scalar_t, typename acc_t>
  void finalize_stats(const FinalizeStatsArgs<scalar_t, acc_t>& a) {
    const Partials<acc_t>& in = a.in;
    std::vector<double> n(kFinalStrands), s(kFinalStrands), m2(kFinalStrands);
    for (int64_t c = 0; c < in.C; ++c) {
      for (int ty = 0; ty < kFinalStrands; ++ty) strand_count_sum(in.part, in.slots, in.C, c, ty, &n[ty], &s[ty]);
      const double count = strand_tree(n);
      const double mean = count > 0.0 ? strand_tree(s) / count : 0.0;
      for (int ty = 0; ty < kFinalStrands; ++ty) m2[ty] = strand_m2(in.part, in.slots, in.C, c, ty, mean);
      finish_stats(a, c, count, mean, strand_tree(m2));
    }
  }

  template <typename acc_t>
  void finalize_grad_stats(const FinalizeGradStatsArgs<acc_t>& a) {
    const Partials<acc_t>& in = a.in;
    std::vector<double> g(kFinalStrands), gz(kFinalStrands);
    for (int64_t c = 0; c < in.C; ++c) {
      for (int ty = 0; ty < kFinalStrands; ++ty) {
        g[ty] = strand_sum(in.value(0), in.slots, in.C, c, ty);
        gz[ty] = strand_sum(in.value(1), in.slots, in.C, c, ty);
      }
      finish_grad_stats(a, c, strand_tree(g), strand_tree(gz));
    }
  }

  template <typename scalar_t, typename acc_t>
  void finalize_weight_grad(const FinalizeWeightGradArgs<scalar_t, acc_t>& a) {
    const Partials<acc_t>& in = a.in;
    std::vector<double> red(kFinalStrands);
    for (int t = 0; t < a.KK; ++t) {
      for (int64_t c = 0; c < in.C; ++c) {
        for (int ty = 0; ty < kFinalStrands; ++ty) red[ty] = strand_sum(in.value(t), in.slots, in.C, c, ty);
        finish_weight_grad(a, c, t, strand_tree(red));
      }
    }
  }
};

}  // namespace

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  m.def(
      "_debug_emulate_eval(Tensor input, Tensor weight, Tensor running_mean, Tensor running_var, "
      "Tensor? bn_weight, Tensor? bn_bias, int groups, int stride, float eps, bool shuffle_last) -> Tensor");
  m.def(
      "_debug_emulate_train(Tensor input, Tensor weight, Tensor? bn_weight, Tensor? bn_bias, int groups, "
      "int stride, float eps, bool shuffle_last) -> (Tensor, Tensor, Tensor)");
  m.def(
      "_debug_emulate_backward(Tensor grad_output, Tensor input, Tensor weight, Tensor? bn_weight, "
      "Tensor mean, Tensor invstd, int groups, int stride, bool shuffle_last, bool training) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(shufflenet_fused, CPU, m) {
  m.impl("_debug_emulate_eval", &eval_on_cpu<EmuExec>);
  m.impl("_debug_emulate_train", &train_on_cpu<EmuExec>);
  m.impl("_debug_emulate_backward", &backward_on_cpu<EmuExec>);
}

}  // namespace tiled
}  // namespace shufflenet_fused
