// CUDA registrations of the fused ops: argument checks (common/checks.h, as
// the CPU ops, plus "input is a CUDA tensor"), the device guard and the dtype
// dispatch to the per-dtype entry points (launcher.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include <tuple>

#include "common/checks.h"
#include "cuda/launcher.h"
#include "tiled/pipeline.h"

namespace shufflenet_fused {
namespace cuda {
namespace {

// Every other tensor is checked against input's device by the shared checks.
void check_on_cuda(const at::Tensor& input) {
  TORCH_CHECK(input.is_cuda(), "shufflenet_fused: input must be a CUDA tensor, got ", input.device());
}

at::Tensor dwconv_bn_eval_cuda(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& running_mean, const at::Tensor& running_var,
                               const c10::optional<at::Tensor>& bn_weight,
                               const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                               double eps, bool shuffle_last) {
  const ConvGeometry g =
      check_eval_args(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps);
  check_on_cuda(input);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const tiled::Prepared pr = tiled::prepare(input, weight, g, groups, shuffle_last);
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dwconv_bn_eval_cuda",
                                         [&] { return eval<scalar_t>(pr, running_mean, running_var, bn_weight,
                                                                     bn_bias, eps); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dwconv_bn_train_cuda(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps, bool shuffle_last) {
  const ConvGeometry g = check_train_args(input, weight, bn_weight, bn_bias, groups, stride, eps);
  check_on_cuda(input);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const tiled::Prepared pr = tiled::prepare(input, weight, g, groups, shuffle_last);
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dwconv_bn_train_cuda",
                                         [&] { return train<scalar_t>(pr, bn_weight, bn_bias, eps); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dwconv_bn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd,
    int64_t groups, int64_t stride, bool shuffle_last, bool training) {
  const ConvGeometry g =
      check_backward_args(grad_output, input, weight, bn_weight, mean, invstd, groups, stride);
  check_on_cuda(input);
  const c10::cuda::CUDAGuard device_guard(input.device());
  const tiled::Prepared pr = tiled::prepare(input, weight, g, groups, shuffle_last, grad_output);
  const at::ScalarType bn_dtype = bn_grad_dtype(bn_weight, input);
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                         "dwconv_bn_backward_cuda", [&] {
                                           return backward<scalar_t>(pr, bn_weight, mean, invstd, training,
                                                                     bn_dtype);
                                         });
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, CUDA, m) {
  m.impl("dwconv_bn_eval", &dwconv_bn_eval_cuda);
  m.impl("dwconv_bn_train", &dwconv_bn_train_cuda);
  m.impl("dwconv_bn_backward", &dwconv_bn_backward_cuda);
}

}  // namespace cuda
}  // namespace shufflenet_fused
