// The depthwise-conv + BN ops computed as the reference computes them
// (ATen's conv2d and batch norm, in the statistics' type), for conv weights
// with a NaN or Inf. The kernels skip the taps that fall on the zero padding
// and fold BN into the taps; conv2d multiplies the padding's zeros by every
// tap, so with a non-finite tap (0 * inf = NaN) their NaN/Inf patterns would
// differ from the reference's. The CPU entry points (dwconv_bn_cpu.cpp) call
// these after their checks, when a weight they read is not finite. The CUDA
// passes stage zero-padded tiles and multiply the padding by every tap, as
// the reference, so the CUDA entry points need no such path.
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
