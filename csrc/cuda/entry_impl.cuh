// Definitions of the entry points of entry.h for the CUDA executor; included
// only by the per-dtype .cu files, each of which instantiates one dtype.
#pragma once

#include "entry.h"
#include "kernels.cuh"
#include "tiled/pipeline.h"

namespace shufflenet_fused {
namespace cuda {

template <typename scalar_t>
at::Tensor eval(const pipeline::Prepared& pr, const at::Tensor& running_mean, const at::Tensor& running_var,
                const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias, double eps) {
  cuda_kernels::CudaExec ex;
  return pipeline::run_eval<cuda_kernels::CudaExec, scalar_t>(ex, pr, running_mean, running_var, bn_weight,
                                                              bn_bias, eps);
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> train(const pipeline::Prepared& pr,
                                                     const c10::optional<at::Tensor>& bn_weight,
                                                     const c10::optional<at::Tensor>& bn_bias, double eps) {
  cuda_kernels::CudaExec ex;
  return pipeline::run_train<cuda_kernels::CudaExec, scalar_t>(ex, pr, bn_weight, bn_bias, eps);
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(const pipeline::Prepared& pr,
                                                                    const c10::optional<at::Tensor>& bn_weight,
                                                                    const at::Tensor& mean,
                                                                    const at::Tensor& invstd, bool training,
                                                                    at::ScalarType bn_dtype) {
  cuda_kernels::CudaExec ex;
  return pipeline::run_backward<cuda_kernels::CudaExec, scalar_t>(ex, pr, bn_weight, mean, invstd, training,
                                                                  bn_dtype);
}

}  // namespace cuda
}  // namespace shufflenet_fused

#define SHUFFLENET_FUSED_INSTANTIATE_CUDA(T)                                                              \
  namespace shufflenet_fused {                                                                         \
  namespace cuda {                                                                                     \
  template at::Tensor eval<T>(const pipeline::Prepared&, const at::Tensor&, const at::Tensor&,         \
                              const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,      \
                              double);                                                                 \
  template std::tuple<at::Tensor, at::Tensor, at::Tensor> train<T>(                                    \
      const pipeline::Prepared&, const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,   \
      double);                                                                                         \
  template std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward<T>(                     \
      const pipeline::Prepared&, const c10::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&, \
      bool, at::ScalarType);                                                                           \
  }                                                                                                    \
  }
