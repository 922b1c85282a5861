// The three ops through ATen, for non-finite conv weights (see the header).
// Channel shuffles are at::channel_shuffle, torch.nn.ChannelShuffle (the
// reference's); at::channel_shuffle(t, C / groups) undoes it.
#include "cpu/nonfinite_weight_ops.h"

#include <algorithm>
#include <cmath>

#include "common/checks.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// The conv's input: the input in its channel order (shuffled first or not).
at::Tensor conv_input(const at::Tensor& input, int64_t groups, bool shuffle_last) {
  return shuffle_last ? input : at::channel_shuffle(input, groups);
}

// F.conv2d as the reference calls it, in the input's dtype: ATen's conv
// kernels differ between dtypes in whether the padding is multiplied.
at::Tensor conv(const at::Tensor& x, const at::Tensor& weight, int64_t stride) {
  const int64_t pad = weight.size(-1) / 2;
  return at::conv2d(x, weight, {}, {stride, stride}, {pad, pad}, {1, 1}, x.size(1));
}

// The conv's output channels in the op's output order and the input's layout.
at::Tensor to_output(const at::Tensor& y, const at::Tensor& input, int64_t groups, bool shuffle_last) {
  const at::Tensor out = shuffle_last ? at::channel_shuffle(y, groups) : y;
  return out.contiguous(input.suggest_memory_format());
}

}  // namespace

bool has_nonfinite(const std::vector<double>& weight) {
  return !std::all_of(weight.begin(), weight.end(), [](double v) { return std::isfinite(v); });
}

at::Tensor nonfinite_weight_eval(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                                 const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                                 const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
                                 bool shuffle_last) {
  const at::Tensor z = conv(conv_input(input, groups, shuffle_last), weight, stride);
  const at::Tensor y = at::batch_norm(z, bn_weight, bn_bias, running_mean, running_var, false, 0.0, eps, true);
  return to_output(y, input, groups, shuffle_last);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nonfinite_weight_train(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps, bool shuffle_last) {
  const at::Tensor z = conv(conv_input(input, groups, shuffle_last), weight, stride);
  auto [y, mean, invstd] = at::native_batch_norm(z, bn_weight, bn_bias, {}, {}, true, 0.0, eps);
  const at::ScalarType stats = stat_dtype(input.scalar_type());
  return {to_output(y, input, groups, shuffle_last), mean.to(stats), invstd.to(stats)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nonfinite_weight_backward(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
    int64_t stride, bool shuffle_last, bool training) {
  const int64_t C = input.size(1);
  const at::ScalarType acc = stat_dtype(input.scalar_type());
  const at::Tensor x = conv_input(input, groups, shuffle_last);
  const at::Tensor z = conv(x, weight, stride);
  // grad_output in the conv's channel order.
  const at::Tensor g = shuffle_last ? at::channel_shuffle(grad_output, C / groups) : grad_output;
  // BN's backward as autograd runs F.batch_norm's: in training ATen's own
  // backward, with the statistics in the type its forward saves them in (that
  // of bn_weight, else the statistics' type); frozen statistics: dz = g *
  // gamma * invstd.
  const auto per_channel = [](const at::Tensor& t) { return t.view({1, -1, 1, 1}); };
  const at::ScalarType saved = bn_grad_dtype(bn_weight, input);  // bn_weight's dtype, else the statistics'
  at::Tensor dz;
  if (training) {
    dz = std::get<0>(at::native_batch_norm_backward(g, z, bn_weight, {}, {}, mean.to(saved), invstd.to(saved), true,
                                                    0.0, {true, false, false}));
  } else {
    const at::Tensor gamma = bn_weight.value_or(at::Tensor());
    const at::Tensor scale = gamma.defined() ? gamma.to(acc) * invstd.to(acc) : invstd.to(acc);
    dz = (g.to(acc) * per_channel(scale)).to(input.scalar_type());
  }
  const at::Tensor ga = g.to(acc);
  const at::Tensor grad_beta = ga.sum({0, 2, 3});
  const at::Tensor grad_gamma = (ga * (z.to(acc) - per_channel(mean.to(acc)))).sum({0, 2, 3}) * invstd.to(acc);
  const int64_t pad = weight.size(-1) / 2;
  auto [gx, gw, gb] = at::convolution_backward(dz, x, weight, c10::nullopt, {stride, stride}, {pad, pad}, {1, 1},
                                               false, {0, 0}, C, {true, true, false});
  const at::Tensor grad_input =
      (shuffle_last ? gx : at::channel_shuffle(gx, C / groups)).contiguous(input.suggest_memory_format());
  return {grad_input, gw, grad_gamma.to(saved), grad_beta.to(saved)};
}

}  // namespace cpu
}  // namespace shufflenet_fused
