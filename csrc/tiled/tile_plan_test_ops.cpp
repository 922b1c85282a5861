// Test-only op: the tile plans of the CUDA passes (tiled/tile_plan.h) for one
// geometry, so that scripts/sass_report.py turns per-loop SASS instruction
// counts into warp-instructions per output with the trip counts the kernels
// really run. Built only with SHUFFLENET_FUSED_TEST_OPS=1.
//
//   _debug_tile_plan(N, C, H, W, k, stride, channels_last, acc_bytes)
//     -> [TH, TW, chunks_w, in_rows, pitch, tiles_h, tiles_w, units, planes]
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "tiled/tile_plan.h"

namespace shufflenet_fused {
namespace tiled {
namespace {

std::vector<int64_t> debug_tile_plan(int64_t N, int64_t C, int64_t H, int64_t W, int64_t k, int64_t stride,
                                     bool channels_last, int64_t acc_bytes) {
  TORCH_CHECK(N >= 1 && C >= 1 && H >= 1 && W >= 1 && (k == 3 || k == 5 || k == 7) && (stride == 1 || stride == 2) &&
                  (acc_bytes == 4 || acc_bytes == 8),
              "shufflenet_fused: bad tile plan arguments");
  const Geo g = make_geo(N, C, H, W, static_cast<int>(k), static_cast<int>(stride), 1, false, channels_last);
  const TilePlan p = plan_tile(g, static_cast<int>(acc_bytes));
  return {p.TH, p.TW, p.chunks_w, p.in_rows, p.pitch, p.tiles_h, p.tiles_w, p.units, p.planes};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  m.def("_debug_tile_plan(int N, int C, int H, int W, int k, int stride, bool channels_last, int acc_bytes) -> int[]",
        &debug_tile_plan);
}

}  // namespace tiled
}  // namespace shufflenet_fused
