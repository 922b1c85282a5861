// Test-only op: the tile plans of the CUDA passes (tiled/tile_plan.h) for one
// geometry, so that scripts/sass_report.py turns per-loop SASS instruction
// counts into warp-instructions per output with the trip counts the kernels
// really run. Built only with SHUFFLENET_FUSED_TEST_OPS=1.
//
//   _debug_tile_plan(N, C, H, W, k, stride, channels_last, acc_bytes)
//     -> [TH, TW, chunks_w, in_rows, pitch, tiles_h, tiles_w, units, planes]
//   _debug_walk_plan(N, C, H, W, k, stride, channels_last)
//     -> [rows, strip, blocks, row_chunks, strips, index32]   (tiled/walk_eval.h, as a GPU plans it)
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "tiled/tile_plan.h"
#include "tiled/walk_eval.h"

namespace shufflenet_fused {
namespace tiled {
namespace {

Geo checked_geo(int64_t N, int64_t C, int64_t H, int64_t W, int64_t k, int64_t stride, bool channels_last) {
  TORCH_CHECK(N >= 1 && C >= 1 && H >= 1 && W >= 1 && (k == 3 || k == 5 || k == 7) && (stride == 1 || stride == 2),
              "shufflenet_fused: bad plan arguments");
  return make_geo(N, C, H, W, static_cast<int>(k), static_cast<int>(stride), 1, false, channels_last);
}

std::vector<int64_t> debug_tile_plan(int64_t N, int64_t C, int64_t H, int64_t W, int64_t k, int64_t stride,
                                     bool channels_last, int64_t acc_bytes) {
  TORCH_CHECK(acc_bytes == 4 || acc_bytes == 8, "shufflenet_fused: acc_bytes must be 4 or 8");
  const Geo g = checked_geo(N, C, H, W, k, stride, channels_last);
  const TilePlan p = plan_tile(g, static_cast<int>(acc_bytes));
  return {p.TH, p.TW, p.chunks_w, p.in_rows, p.pitch, p.tiles_h, p.tiles_w, p.units, p.planes};
}

std::vector<int64_t> debug_walk_plan(int64_t N, int64_t C, int64_t H, int64_t W, int64_t k, int64_t stride,
                                     bool channels_last) {
  const WalkPlan p = plan_walk(checked_geo(N, C, H, W, k, stride, channels_last), kMinUnits);
  return {p.rows, p.strip, p.blocks, p.row_chunks, p.strips, p.index32};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  m.def("_debug_tile_plan(int N, int C, int H, int W, int k, int stride, bool channels_last, int acc_bytes) -> int[]",
        &debug_tile_plan);
  m.def("_debug_walk_plan(int N, int C, int H, int W, int k, int stride, bool channels_last) -> int[]",
        &debug_walk_plan);
}

}  // namespace tiled
}  // namespace shufflenet_fused
