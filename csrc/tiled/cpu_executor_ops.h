// The three ops run on CPU tensors by an executor of tiled/pipeline.h: the
// shared entry of the test-only ops that run the CUDA backend without a GPU
// (EmuExec in tiled/emulator_test_ops.cpp, HostExec in
// cuda/host/host_runner_test_ops.cpp). Same checks and arguments as the real
// ops; all four dtypes.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/util/Optional.h>

#include <tuple>

#include "common/checks.h"
#include "tiled/pipeline.h"

namespace shufflenet_fused {
namespace tiled {

inline void check_cpu_input(const at::Tensor& input) {
  TORCH_CHECK(input.device().is_cpu(), "shufflenet_fused: the CUDA backend's CPU runs take CPU tensors, got ",
              input.device());
}

template <typename Exec>
at::Tensor eval_on_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                       const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                       const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
                       bool shuffle_last) {
  const ConvGeometry g =
      check_eval_args(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps);
  check_cpu_input(input);
  const Prepared pr = prepare(input, weight, g, groups, shuffle_last);
  Exec ex;
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "eval_on_cpu", [&] {
    return run_eval<Exec, scalar_t>(ex, pr, running_mean, running_var, bn_weight, bn_bias, eps);
  });
}

template <typename Exec>
std::tuple<at::Tensor, at::Tensor, at::Tensor> train_on_cpu(const at::Tensor& input, const at::Tensor& weight,
                                                            const c10::optional<at::Tensor>& bn_weight,
                                                            const c10::optional<at::Tensor>& bn_bias,
                                                            int64_t groups, int64_t stride, double eps,
                                                            bool shuffle_last) {
  const ConvGeometry g = check_train_args(input, weight, bn_weight, bn_bias, groups, stride, eps);
  check_cpu_input(input);
  const Prepared pr = prepare(input, weight, g, groups, shuffle_last);
  Exec ex;
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "train_on_cpu", [&] {
    return run_train<Exec, scalar_t>(ex, pr, bn_weight, bn_bias, eps);
  });
}

template <typename Exec>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_on_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
    int64_t stride, bool shuffle_last, bool training) {
  const ConvGeometry g = check_backward_args(grad_output, input, weight, bn_weight, mean, invstd, groups, stride);
  check_cpu_input(input);
  const Prepared pr = prepare(input, weight, g, groups, shuffle_last, grad_output);
  const at::ScalarType bn_dtype = bn_grad_dtype(bn_weight, input);
  Exec ex;
  return AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "backward_on_cpu", [&] {
    return run_backward<Exec, scalar_t>(ex, pr, bn_weight, mean, invstd, training, bn_dtype);
  });
}

}  // namespace tiled
}  // namespace shufflenet_fused
