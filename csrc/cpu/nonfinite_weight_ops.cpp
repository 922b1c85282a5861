#include "cpu/nonfinite_weight_ops.h"

#include <algorithm>
#include <cmath>

#include "common/checks.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// at::channel_shuffle is torch.nn.ChannelShuffle (the reference's);
// at::channel_shuffle(t, C / groups) undoes at::channel_shuffle(t, groups).

// The conv's input: the input in its channel order (shuffled first or not), in `acc`.
at::Tensor conv_input(const at::Tensor& input, int64_t groups, bool shuffle_last, at::ScalarType acc) {
  return (shuffle_last ? input : at::channel_shuffle(input, groups)).to(acc);
}

at::Tensor conv(const at::Tensor& x, const at::Tensor& weight, int64_t stride) {
  const int64_t pad = weight.size(-1) / 2;
  return at::conv2d(x, weight.to(x.scalar_type()), {}, {stride, stride}, {pad, pad}, {1, 1}, x.size(1));
}

// The conv's output channels in the op's output order, in the input's dtype and layout.
at::Tensor to_output(const at::Tensor& y, const at::Tensor& input, int64_t groups, bool shuffle_last) {
  const at::Tensor out = shuffle_last ? at::channel_shuffle(y, groups) : y;
  return out.to(input.scalar_type()).contiguous(input.suggest_memory_format());
}

c10::optional<at::Tensor> in_type(const c10::optional<at::Tensor>& t, at::ScalarType acc) {
  return t.has_value() && t->defined() ? c10::optional<at::Tensor>(t->to(acc)) : c10::nullopt;
}

}  // namespace

bool has_nonfinite(const std::vector<double>& weight) {
  return !std::all_of(weight.begin(), weight.end(), [](double v) { return std::isfinite(v); });
}

at::Tensor nonfinite_weight_eval(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                                 const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                                 const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
                                 bool shuffle_last) {
  const at::ScalarType acc = stat_dtype(input.scalar_type());
  const at::Tensor z = conv(conv_input(input, groups, shuffle_last, acc), weight, stride);
  const at::Tensor y = at::batch_norm(z, in_type(bn_weight, acc), in_type(bn_bias, acc), running_mean.to(acc),
                                      running_var.to(acc), false, 0.0, eps, false);
  return to_output(y, input, groups, shuffle_last);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nonfinite_weight_train(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps, bool shuffle_last) {
  const at::ScalarType acc = stat_dtype(input.scalar_type());
  const at::Tensor z = conv(conv_input(input, groups, shuffle_last, acc), weight, stride);
  auto [y, mean, invstd] =
      at::native_batch_norm(z, in_type(bn_weight, acc), in_type(bn_bias, acc), {}, {}, true, 0.0, eps);
  return {to_output(y, input, groups, shuffle_last), mean, invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nonfinite_weight_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
    int64_t stride, bool shuffle_last, bool training) {
  const at::ScalarType acc = stat_dtype(input.scalar_type());
  const int64_t C = input.size(1);
  const at::Tensor x = conv_input(input, groups, shuffle_last, acc);
  const at::Tensor w = weight.to(acc);
  const at::Tensor z = conv(x, w, stride);
  // grad_output in the conv's channel order.
  const at::Tensor g = (shuffle_last ? at::channel_shuffle(grad_output, C / groups) : grad_output).to(acc);
  const auto per_channel = [](const at::Tensor& t) { return t.view({1, -1, 1, 1}); };
  const at::Tensor m = mean.to(acc), s = invstd.to(acc);
  const at::Tensor gamma = bn_weight.has_value() && bn_weight->defined() ? bn_weight->to(acc) : at::ones({C}, z.options());
  // BN's backward as F.batch_norm's: in training through ATen's own backward
  // (batch statistics), with frozen statistics dz = g * gamma * invstd.
  at::Tensor dz = training ? std::get<0>(at::native_batch_norm_backward(g, z, gamma, {}, {}, m, s, true, 0.0,
                                                                         {true, false, false}))
                           : g * per_channel(gamma * s);
  const at::Tensor grad_beta = g.sum({0, 2, 3});
  const at::Tensor grad_gamma = (g * (z - per_channel(m))).sum({0, 2, 3}) * s;
  const int64_t pad = weight.size(-1) / 2;
  auto [gx, gw, gb] = at::convolution_backward(dz, x, w, c10::nullopt, {stride, stride}, {pad, pad}, {1, 1}, false,
                                               {0, 0}, C, {true, true, false});
  const at::Tensor grad_input =
      (shuffle_last ? gx : at::channel_shuffle(gx, C / groups)).to(input.scalar_type()).contiguous(input.suggest_memory_format());
  const at::ScalarType bn_dtype = bn_grad_dtype(bn_weight, input);
  return {grad_input, gw.to(weight.scalar_type()), grad_gamma.to(bn_dtype), grad_beta.to(bn_dtype)};
}

}  // namespace cpu
}  // namespace shufflenet_fused
