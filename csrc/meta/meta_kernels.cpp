// Meta kernels of the depthwise-conv + BN ops: what torch.compile and
// torch.export trace with (fake tensors run the Meta kernel), and what a call
// on meta tensors runs. They check the arguments with the kernels' own rules
// (common/checks.h) and return outputs of the kernels' shapes, dtypes and
// memory formats, sizes symbolic where the input's are.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "common/checks.h"

namespace shufflenet_fused {
namespace meta {
namespace {

at::Tensor new_output(const at::Tensor& input, int64_t K, int64_t stride) {
  return at::empty_symint(conv_output_sym_sizes(input, K, stride),
                          input.options().memory_format(output_memory_format(input)));
}

at::Tensor eval_meta(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                     const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                     const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
                     bool /*shuffle_last*/) {
  const int64_t K = check_eval_rules(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps);
  return new_output(input, K, stride);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> train_meta(const at::Tensor& input, const at::Tensor& weight,
                                                          const c10::optional<at::Tensor>& bn_weight,
                                                          const c10::optional<at::Tensor>& bn_bias, int64_t groups,
                                                          int64_t stride, double eps, bool /*shuffle_last*/) {
  const int64_t K = check_train_rules(input, weight, bn_weight, bn_bias, groups, stride, eps);
  const at::Tensor mean =
      at::empty_symint({input.sym_size(1)}, input.options().dtype(stat_dtype(input.scalar_type())));
  return {new_output(input, K, stride), mean, at::empty_like(mean)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_meta(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
    int64_t stride, bool /*shuffle_last*/, bool /*training*/) {
  check_backward_rules(grad_output, input, weight, bn_weight, mean, invstd, groups, stride);
  const at::Tensor grad_input =
      at::empty_symint(input.sym_sizes(), input.options().memory_format(output_memory_format(input)));
  const at::Tensor grad_bn_weight =
      at::empty_symint({input.sym_size(1)}, input.options().dtype(bn_grad_dtype(bn_weight, input)));
  return {grad_input, at::empty_like(weight, at::MemoryFormat::Contiguous), grad_bn_weight,
          at::empty_like(grad_bn_weight)};
}

void update_running_stats_meta(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                               const at::Tensor& invstd, double /*momentum*/, double /*eps*/,
                               c10::SymInt count) {
  check_running_stats_args(running_mean, running_var, mean, invstd, count);
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, Meta, m) {
  m.impl("dwconv_bn_eval", &eval_meta);
  m.impl("dwconv_bn_train", &train_meta);
  m.impl("dwconv_bn_backward", &backward_meta);
  m.impl("update_running_stats", &update_running_stats_meta);
}

}  // namespace meta
}  // namespace shufflenet_fused
