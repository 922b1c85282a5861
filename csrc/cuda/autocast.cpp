// Autocast (CUDA) for the fused forward ops: like a convolution, the input and
// the conv weight are cast to the autocast dtype (float16 or bfloat16);
// BatchNorm parameters and running statistics are left alone (they stay
// float32, as nn.BatchNorm2d's do under autocast), and float64 tensors are
// not cast (autocast's own rule). The cast is an autograd-visible .to(), so
// gradients reach the float32 leaves. The backward op needs no autocast
// kernel: it is called by autograd with the already-cast saved tensors.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <tuple>

namespace shufflenet_fused {
namespace cuda {
namespace {

at::Tensor to_autocast(const at::Tensor& t) {
  return at::autocast::cached_cast(at::autocast::get_autocast_dtype(at::kCUDA), t, c10::DeviceType::CUDA);
}

at::Tensor dwconv_bn_eval_autocast(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& running_mean, const at::Tensor& running_var,
                                   const c10::optional<at::Tensor>& bn_weight,
                                   const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                                   double eps, bool shuffle_last) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("shufflenet_fused::dwconv_bn_eval", "")
                             .typed<decltype(dwconv_bn_eval_autocast)>();
  return op.call(to_autocast(input), to_autocast(weight), running_mean, running_var, bn_weight, bn_bias, groups,
                 stride, eps, shuffle_last);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dwconv_bn_train_autocast(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps, bool shuffle_last) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCUDA);
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("shufflenet_fused::dwconv_bn_train", "")
                             .typed<decltype(dwconv_bn_train_autocast)>();
  return op.call(to_autocast(input), to_autocast(weight), bn_weight, bn_bias, groups, stride, eps, shuffle_last);
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, AutocastCUDA, m) {
  m.impl("dwconv_bn_eval", &dwconv_bn_eval_autocast);
  m.impl("dwconv_bn_train", &dwconv_bn_train_autocast);
}

}  // namespace cuda
}  // namespace shufflenet_fused
