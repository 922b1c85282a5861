// The depthwise-conv + BN ops computed as the reference computes them
// (ATen's conv2d and batch norm, in the input's dtype), for conv weights with
// a NaN or Inf. The kernels skip the taps that fall on the zero padding and
// fold BN into the taps; ATen's conv kernels (which ones depends on the dtype
// and the shape) may multiply the padding's zeros by the taps, so with a
// non-finite tap (0 * inf = NaN) the patterns would differ. The CPU entry
// points (dwconv_bn_cpu.cpp) call these after their checks, when a weight
// they read is not finite. The CUDA passes multiply the padding by every tap
// and agree with the float64 reference as they are (tests/test_nan_inf_grads.py).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <tuple>
#include <vector>

namespace shufflenet_fused {
namespace cpu {

// Whether any of the conv weight's values is NaN or Inf.
bool has_nonfinite(const std::vector<double>& weight);

at::Tensor nonfinite_weight_eval(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                                 const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                                 const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
                                 bool shuffle_last);

// (output, batch mean, invstd), the statistics in the statistics' type.
std::tuple<at::Tensor, at::Tensor, at::Tensor> nonfinite_weight_train(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps, bool shuffle_last);

// (grad_input, grad_weight, grad_bn_weight, grad_bn_bias).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nonfinite_weight_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
    int64_t stride, bool shuffle_last, bool training);

}  // namespace cpu
}  // namespace shufflenet_fused
