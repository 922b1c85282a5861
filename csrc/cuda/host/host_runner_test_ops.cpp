// Test-only ops: the CUDA kernels of csrc/cuda/kernels.cuh, compiled as host
// C++ and run on host threads (cuda_on_host.h), through the same pass
// sequence (tiled/pipeline.h) and launch shapes (cuda/launch_shape.h) as the
// CUDA executor. Built only with SHUFFLENET_FUSED_TEST_OPS=1; no GPU needed.
//
// Unlike the emulator (csrc/tiled/emulator_test_ops.cpp), which calls the
// lane work lane after lane, this executes the kernels themselves: their
// thread indexing, barriers, warp shuffles, shared-memory slicing and grid
// loops. Outputs and workspaces start as NaN, so an element no thread writes
// fails the tests; scripts/sanitize_host_runner.sh builds this file under
// ThreadSanitizer and AddressSanitizer + UBSan.
//
//   _host_cuda_eval / _train / _backward   same schemas as the real ops
//
// SF_HOST_RUNNER_LIBRARY names the op namespace (the sanitizer builds load
// next to the main extension and register under another one).
//
// ATen and c10 come first: cuda_on_host.h defines __CUDA_ARCH__ and the CUDA
// keywords, which must not reach their headers.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <tuple>

#include "common/checks.h"
// clang-format off
#include "cuda/host/cuda_on_host.h"
#include "cuda/kernels.cuh"
// clang-format on
#include "cuda/launch_shape.h"
#include "tiled/cpu_executor_ops.h"
#include "tiled/pipeline.h"

#ifndef SF_HOST_RUNNER_LIBRARY
#define SF_HOST_RUNNER_LIBRARY shufflenet_fused
#endif

namespace shufflenet_fused {
namespace cuda {
namespace {

dim3 grid_of(const LaunchShape& s) { return dim3(s.grid_x, s.grid_y, s.grid_z); }
dim3 block_of(const LaunchShape& s) { return dim3(s.block_x, s.block_y); }

// The warp-unit kernels loop over their units grid-stride, so any grid is
// correct; production grids have a block per 8 units and loop only past
// INT_MAX blocks. SHUFFLENET_FUSED_HOST_RUNNER_GRID_CAP=b caps the grid at b
// blocks, so that every warp loops over several units and the code between
// two units (the barrier before the tile is restaged) runs.
// The eval output pass loops grid-stride in y and z as well: those are capped too.
LaunchShape warp_units_shape(LaunchShape s) {
  if (const char* cap = std::getenv("SHUFFLENET_FUSED_HOST_RUNNER_GRID_CAP")) {
    const long b = std::strtol(cap, nullptr, 10);
    if (b > 0) {
      const auto c = static_cast<unsigned int>(b);
      s.grid_x = std::min(s.grid_x, c);
      s.grid_y = std::min(s.grid_y, c);
      s.grid_z = std::min(s.grid_z, c);
    }
  }
  return s;
}

// CudaExec (launcher.cuh), with host::launch in place of <<<...>>>.
struct HostExec {
  // Plane blocks wherever a tile covers its plane (a GPU plans them only for
  // large grids), so the small test shapes run them.
  static constexpr int64_t kBlockMinUnits = 1;
  // The eval pass split as a GPU splits a small grid (many row chunks and
  // strips); the emulator walks whole planes: the tests compare the two.
  static constexpr int64_t kWalkMinUnits = tiled::kMinUnits;
  void fresh(at::Tensor& t) { t.fill_(std::numeric_limits<double>::quiet_NaN()); }

  template <typename scalar_t, typename acc_t>
  void prep(tiled::Prep kind, const tiled::PrepArgs<scalar_t, acc_t>& a) {
    const LaunchShape s = prep_launch(a.C);
    host::launch(grid_of(s), block_of(s), 0, [&] { prep_kernel<scalar_t, acc_t>(kind, a); });
  }

  template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
  void tile(const tiled::TileArgs<scalar_t, acc_t>& a, const tiled::TilePlan& p) {
    const LaunchShape s = warp_units_shape(warp_units_launch<acc_t>(p.units, p.smem_elems, a.geo.channels_last));
    if (a.geo.channels_last) {
      host::launch(grid_of(s), block_of(s), s.dynamic_smem_bytes, [&] { cl_tile_kernel<P, K, S>(a, p); });
    } else {
      host::launch(grid_of(s), block_of(s), s.dynamic_smem_bytes, [&] { nchw_tile_kernel<P, K, S>(a, p); });
    }
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void walk_eval(const tiled::TileArgs<scalar_t, acc_t>& a, tiled::WalkPlan p) {
    // Only images of 2^31 elements take 64-bit offsets; this runs that kernel on small ones.
    if (std::getenv("SHUFFLENET_FUSED_HOST_RUNNER_INDEX64")) p.index32 = false;
    const LaunchShape s = warp_units_shape(walk_launch(p));
    tiled::dispatch_walk(a.geo, p, [&](auto channels_last, auto index) {
      host::launch(grid_of(s), block_of(s), 0,
                   [&] { walk_eval_kernel<decltype(channels_last)::value, decltype(index), K, S>(a, p); });
    });
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void input_grad(const tiled::InputGradArgs<scalar_t, acc_t>& a, const tiled::InputGradPlan& p) {
    const LaunchShape s = warp_units_shape(warp_units_launch<acc_t>(p.units, p.smem_elems, a.geo.channels_last));
    if (a.geo.channels_last) {
      host::launch(grid_of(s), block_of(s), s.dynamic_smem_bytes, [&] { cl_input_grad_kernel<K, S>(a, p); });
    } else {
      host::launch(grid_of(s), block_of(s), s.dynamic_smem_bytes, [&] { nchw_input_grad_kernel<K, S>(a, p); });
    }
  }

  template <typename scalar_t, typename acc_t>
  void finalize_stats(const tiled::FinalizeStatsArgs<scalar_t, acc_t>& a) {
    const LaunchShape s = finalize_launch(a.in.C);
    host::launch(grid_of(s), block_of(s), 0, [&] { finalize_stats_kernel(a); });
  }

  template <typename acc_t>
  void finalize_grad_stats(const tiled::FinalizeGradStatsArgs<acc_t>& a) {
    const LaunchShape s = finalize_launch(a.in.C);
    host::launch(grid_of(s), block_of(s), 0, [&] { finalize_grad_stats_kernel(a); });
  }

  template <typename scalar_t, typename acc_t>
  void finalize_weight_grad(const tiled::FinalizeWeightGradArgs<scalar_t, acc_t>& a) {
    const LaunchShape s = finalize_launch(a.in.C, a.KK);
    host::launch(grid_of(s), block_of(s), 0, [&] { finalize_weight_grad_kernel(a); });
  }
};

}  // namespace

TORCH_LIBRARY_FRAGMENT(SF_HOST_RUNNER_LIBRARY, m) {
  m.def(
      "_host_cuda_eval(Tensor input, Tensor weight, Tensor running_mean, Tensor running_var, "
      "Tensor? bn_weight, Tensor? bn_bias, int groups, int stride, float eps, bool shuffle_last) -> Tensor");
  m.def(
      "_host_cuda_train(Tensor input, Tensor weight, Tensor? bn_weight, Tensor? bn_bias, int groups, "
      "int stride, float eps, bool shuffle_last) -> (Tensor, Tensor, Tensor)");
  m.def(
      "_host_cuda_backward(Tensor grad_output, Tensor input, Tensor weight, Tensor? bn_weight, "
      "Tensor mean, Tensor invstd, int groups, int stride, bool shuffle_last, bool training) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(SF_HOST_RUNNER_LIBRARY, CPU, m) {
  m.impl("_host_cuda_eval", &tiled::eval_on_cpu<HostExec>);
  m.impl("_host_cuda_train", &tiled::train_on_cpu<HostExec>);
  m.impl("_host_cuda_backward", &tiled::backward_on_cpu<HostExec>);
}

}  // namespace cuda
}  // namespace shufflenet_fused
