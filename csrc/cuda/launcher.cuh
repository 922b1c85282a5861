// The CUDA executor of tiled/pipeline.h (grid shapes, shared memory, the
// launches) and the definitions of the entry points of launcher.h. Included
// only by the per-dtype dwconv_bn_<dtype>.cu files, each of which instantiates
// one dtype with SF_INSTANTIATE_CUDA.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Optional.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <tuple>

#include "cuda/kernels.cuh"
#include "cuda/launch_shape.h"
#include "cuda/launcher.h"
#include "tiled/finalize.h"
#include "tiled/lane_table.h"
#include "tiled/lane_work.h"
#include "tiled/pipeline.h"
#include "tiled/tile_plan.h"
#include "tiled/walk_eval.h"

namespace shufflenet_fused {
namespace cuda {

inline dim3 grid_of(const LaunchShape& s) { return dim3(s.grid_x, s.grid_y, s.grid_z); }
inline dim3 block_of(const LaunchShape& s) { return dim3(s.block_x, s.block_y); }

// Launches on the current stream of the current device (the caller holds a
// device guard for the input's device).
struct CudaExec {
  static constexpr int64_t kBlockMinUnits = tiled::kMinUnits;  // plane blocks only where the grid stays full
  static constexpr int64_t kWalkMinUnits = tiled::kMinUnits;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  void fresh(at::Tensor&) {}  // outputs are poisoned by the tests, not here

  template <typename scalar_t, typename acc_t>
  void prep(tiled::Prep kind, const tiled::PrepArgs<scalar_t, acc_t>& a) {
    const LaunchShape s = prep_launch(a.C);
    prep_kernel<scalar_t, acc_t><<<grid_of(s), block_of(s), 0, stream>>>(kind, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <TilePass P, int K, int S, typename scalar_t, typename acc_t>
  void tile(const tiled::TileArgs<scalar_t, acc_t>& a, const tiled::TilePlan& p) {
    const LaunchShape s = warp_units_launch<acc_t>(p.units, p.smem_elems, a.geo.channels_last);
    if (a.geo.channels_last) {
      cl_tile_kernel<P, K, S><<<grid_of(s), block_of(s), s.dynamic_smem_bytes, stream>>>(a, p);
    } else {
      nchw_tile_kernel<P, K, S><<<grid_of(s), block_of(s), s.dynamic_smem_bytes, stream>>>(a, p);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void walk_eval(const tiled::TileArgs<scalar_t, acc_t>& a, const tiled::WalkPlan& p) {
    const LaunchShape s = walk_launch(p);
    tiled::dispatch_walk(a.geo, p, [&](auto channels_last, auto index) {
      walk_eval_kernel<decltype(channels_last)::value, decltype(index), K, S>
          <<<grid_of(s), block_of(s), 0, stream>>>(a, p);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <int K, int S, typename scalar_t, typename acc_t>
  void input_grad(const tiled::InputGradArgs<scalar_t, acc_t>& a, const tiled::InputGradPlan& p) {
    const LaunchShape s = warp_units_launch<acc_t>(p.units, p.smem_elems, a.geo.channels_last);
    if (a.geo.channels_last) {
      cl_input_grad_kernel<K, S><<<grid_of(s), block_of(s), s.dynamic_smem_bytes, stream>>>(a, p);
    } else {
      nchw_input_grad_kernel<K, S><<<grid_of(s), block_of(s), s.dynamic_smem_bytes, stream>>>(a, p);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename acc_t>
  void finalize_stats(const tiled::FinalizeStatsArgs<scalar_t, acc_t>& a) {
    const LaunchShape s = finalize_launch(a.in.C);
    finalize_stats_kernel<<<grid_of(s), block_of(s), 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename acc_t>
  void finalize_grad_stats(const tiled::FinalizeGradStatsArgs<acc_t>& a) {
    const LaunchShape s = finalize_launch(a.in.C);
    finalize_grad_stats_kernel<<<grid_of(s), block_of(s), 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <typename scalar_t, typename acc_t>
  void finalize_weight_grad(const tiled::FinalizeWeightGradArgs<scalar_t, acc_t>& a) {
    const LaunchShape s = finalize_launch(a.in.C, a.KK);
    finalize_weight_grad_kernel<<<grid_of(s), block_of(s), 0, stream>>>(a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

// ------------------------------------------------------- entry points ----

template <typename scalar_t>
at::Tensor eval(const tiled::Prepared& pr, const at::Tensor& running_mean, const at::Tensor& running_var,
                const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias, double eps) {
  CudaExec ex;
  return tiled::run_eval<CudaExec, scalar_t>(ex, pr, running_mean, running_var, bn_weight, bn_bias, eps);
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> train(const tiled::Prepared& pr,
                                                     const c10::optional<at::Tensor>& bn_weight,
                                                     const c10::optional<at::Tensor>& bn_bias, double eps) {
  CudaExec ex;
  return tiled::run_train<CudaExec, scalar_t>(ex, pr, bn_weight, bn_bias, eps);
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(const tiled::Prepared& pr,
                                                                    const c10::optional<at::Tensor>& bn_weight,
                                                                    const at::Tensor& mean,
                                                                    const at::Tensor& invstd, bool training,
                                                                    at::ScalarType bn_dtype) {
  CudaExec ex;
  return tiled::run_backward<CudaExec, scalar_t>(ex, pr, bn_weight, mean, invstd, training, bn_dtype);
}

}  // namespace cuda
}  // namespace shufflenet_fused

// Explicit instantiation of the three entry points for dtype T.
#define SF_INSTANTIATE_CUDA(T)                                                                             \
  namespace shufflenet_fused {                                                                            \
  namespace cuda {                                                                                        \
  template at::Tensor eval<T>(const tiled::Prepared&, const at::Tensor&, const at::Tensor&,               \
                              const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, double); \
  template std::tuple<at::Tensor, at::Tensor, at::Tensor> train<T>(                                       \
      const tiled::Prepared&, const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, double); \
  template std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward<T>(                        \
      const tiled::Prepared&, const c10::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&, bool,  \
      at::ScalarType);                                                                                    \
  }                                                                                                       \
  }
