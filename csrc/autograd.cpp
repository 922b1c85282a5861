// Autograd for the fused ops, in C++ (as torchvision's csrc/ops/autograd).
//
// A Python torch.library.register_autograd formula costs tens of microseconds
// per call in Python; at batch 1 that is as much as the kernel itself. These
// C++ autograd.Functions dispatch below autograd to the backend kernels and
// call the backward op (its own op, so torch.compile and opcheck see it).
// The Meta kernels (what fake tensors run) are in meta/meta_kernels.cpp.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "common/checks.h"

namespace shufflenet_fused {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using EvalSig = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, int64_t,
                           int64_t, double, bool);
using TrainSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
    int64_t, int64_t, double, bool);
using BackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
    const at::Tensor&, const at::Tensor&, int64_t, int64_t, bool, bool);

template <typename Sig>
c10::TypedOperatorHandle<Sig> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

const c10::TypedOperatorHandle<EvalSig>& eval_op() {
  static const auto op = op_handle<EvalSig>("shufflenet_fused::dwconv_bn_eval");
  return op;
}
const c10::TypedOperatorHandle<TrainSig>& train_op() {
  static const auto op = op_handle<TrainSig>("shufflenet_fused::dwconv_bn_train");
  return op;
}
const c10::TypedOperatorHandle<BackwardSig>& backward_op() {
  static const auto op = op_handle<BackwardSig>("shufflenet_fused::dwconv_bn_backward");
  return op;
}

bool defined(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

bool requires_grad(const c10::optional<at::Tensor>& t) { return defined(t) && t->requires_grad(); }

// Saved state shared by both forwards; the backward differs only in `training`.
void save_for_backward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                       const c10::optional<at::Tensor>& bn_weight,
                       const c10::optional<at::Tensor>& bn_bias, const at::Tensor& mean,
                       const at::Tensor& invstd, int64_t groups, int64_t stride, bool shuffle_last,
                       bool training) {
  ctx->save_for_backward({input, weight, defined(bn_weight) ? *bn_weight : at::Tensor(), mean, invstd});
  ctx->saved_data["groups"] = groups;
  ctx->saved_data["stride"] = stride;
  ctx->saved_data["shuffle_last"] = shuffle_last;
  ctx->saved_data["training"] = training;
  ctx->saved_data["has_bn_weight"] = defined(bn_weight);
  ctx->saved_data["has_bn_bias"] = defined(bn_bias);
}

// Returns (grad_input, grad_weight, grad_bn_weight, grad_bn_bias); the BN
// gradients are undefined where the forward got None (autograd requires it).
std::array<at::Tensor, 4> run_backward(AutogradContext* ctx, const at::Tensor& grad_output) {
  const auto saved = ctx->get_saved_variables();
  c10::optional<at::Tensor> bn_weight;
  if (ctx->saved_data["has_bn_weight"].toBool()) bn_weight = saved[2];
  auto [gx, gw, gg, gb] = backward_op().call(
      grad_output, saved[0], saved[1], bn_weight, saved[3], saved[4], ctx->saved_data["groups"].toInt(),
      ctx->saved_data["stride"].toInt(), ctx->saved_data["shuffle_last"].toBool(),
      ctx->saved_data["training"].toBool());
  if (!ctx->saved_data["has_bn_weight"].toBool()) gg = at::Tensor();
  if (!ctx->saved_data["has_bn_bias"].toBool()) gb = at::Tensor();
  return {gx, gw, gg, gb};
}

class EvalFunction : public torch::autograd::Function<EvalFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const at::Tensor& running_mean, const at::Tensor& running_var,
                            const c10::optional<at::Tensor>& bn_weight,
                            const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                            double eps, bool shuffle_last) {
    at::Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = eval_op().call(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps,
                         shuffle_last);
    }
    // Frozen statistics: constants for the backward.
    const at::ScalarType sdt = stat_dtype(input.scalar_type());
    const at::Tensor mean = running_mean.detach().to(sdt);
    const at::Tensor invstd = at::rsqrt(running_var.detach().to(sdt) + eps);
    save_for_backward(ctx, input, weight, bn_weight, bn_bias, mean, invstd, groups, stride, shuffle_last, false);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto g = run_backward(ctx, grads[0]);
    // One entry per forward argument: input, weight, running_mean,
    // running_var, bn_weight, bn_bias, groups, stride, eps, shuffle_last.
    return {g[0], g[1], at::Tensor(), at::Tensor(), g[2], g[3], at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

class TrainFunction : public torch::autograd::Function<TrainFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                               const c10::optional<at::Tensor>& bn_weight,
                               const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                               double eps, bool shuffle_last) {
    at::Tensor y, mean, invstd;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(y, mean, invstd) =
          train_op().call(input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last);
    }
    ctx->mark_non_differentiable({mean, invstd});
    save_for_backward(ctx, input, weight, bn_weight, bn_bias, mean, invstd, groups, stride, shuffle_last, true);
    return {y, mean, invstd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto g = run_backward(ctx, grads[0]);
    // input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last.
    return {g[0], g[1], g[2], g[3], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor dwconv_bn_eval_autograd(const at::Tensor& input, const at::Tensor& weight,
                                   const at::Tensor& running_mean, const at::Tensor& running_var,
                                   const c10::optional<at::Tensor>& bn_weight,
                                   const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                                   double eps, bool shuffle_last) {
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (input.requires_grad() || weight.requires_grad() || requires_grad(bn_weight) ||
                           requires_grad(bn_bias));
  if (!needs_grad) {  // inference: skip the autograd bookkeeping entirely
    at::AutoDispatchBelowADInplaceOrView guard;
    return eval_op().call(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps,
                          shuffle_last);
  }
  return EvalFunction::apply(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps,
                             shuffle_last);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dwconv_bn_train_autograd(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps, bool shuffle_last) {
  auto out = TrainFunction::apply(input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last);
  return {out[0], out[1], out[2]};
}

// The backward op has no derivative of its own: without this kernel autograd
// would treat it as constant and a double backward would silently drop terms.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dwconv_bn_backward_autograd(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd,
    int64_t groups, int64_t stride, bool shuffle_last, bool training) {
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (grad_output.requires_grad() || input.requires_grad() || weight.requires_grad() ||
                           requires_grad(bn_weight));
  TORCH_CHECK(!needs_grad,
              "shufflenet_fused: double backward (gradient of a gradient) through shuffle_dwconv_bn is not "
              "supported; use shufflenet_fused.reference for higher-order gradients");
  at::AutoDispatchBelowADInplaceOrView guard;
  return backward_op().call(grad_output, input, weight, bn_weight, mean, invstd, groups, stride, shuffle_last,
                            training);
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, Autograd, m) {
  m.impl("dwconv_bn_eval", &dwconv_bn_eval_autograd);
  m.impl("dwconv_bn_train", &dwconv_bn_train_autograd);
  m.impl("dwconv_bn_backward", &dwconv_bn_backward_autograd);
}

}  // namespace shufflenet_fused
