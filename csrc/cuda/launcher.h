// Entry points of the CUDA backend: one op each, run through the pass
// sequence of tiled/pipeline.h with the CUDA executor. Defined in
// launcher.cuh and instantiated once per dtype in dwconv_bn_<dtype>.cu (thin
// files, compiled in parallel); the op registration in dwconv_bn_cuda.cpp
// dispatches on dtype to them.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <tuple>

#include "tiled/pipeline.h"

namespace shufflenet_fused {
namespace cuda {

template <typename scalar_t>
at::Tensor eval(const tiled::Prepared& pr, const at::Tensor& running_mean, const at::Tensor& running_var,
                const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias, double eps);

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> train(const tiled::Prepared& pr,
                                                     const c10::optional<at::Tensor>& bn_weight,
                                                     const c10::optional<at::Tensor>& bn_bias, double eps);

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(const tiled::Prepared& pr,
                                                                    const c10::optional<at::Tensor>& bn_weight,
                                                                    const at::Tensor& mean,
                                                                    const at::Tensor& invstd, bool training,
                                                                    at::ScalarType bn_dtype);

}  // namespace cuda
}  // namespace shufflenet_fused
