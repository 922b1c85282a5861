// Argument checks of every op, shared by the CPU and CUDA kernels and the Meta
// kernels (meta/meta_kernels.cpp: what torch.compile and torch.export trace
// with), and the output shape/format/dtype rules. Every error a caller can
// cause is a TORCH_CHECK (RuntimeError) that names the argument. The rules read
// sizes as SymInts (sym_size), so they hold for fake tensors whose sizes are
// symbolic: a comparison on a symbolic size becomes a guard. Only the kernels'
// own entry points (check_*_args) also read sizes as integers.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/SymInt.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <utility>
#include <vector>

#include "common/conv_geometry.h"

namespace shufflenet_fused {

struct ConvGeometry {
  int64_t N, C, H, W, K, stride, Ho, Wo;
};

inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Statistics (mean/invstd) are float32, or float64 for float64 input.
inline at::ScalarType stat_dtype(at::ScalarType input_dtype) {
  return input_dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_per_channel(const at::Tensor& t, const char* name, const at::Tensor& input) {
  TORCH_CHECK(t.dim() == 1 && t.sym_size(0) == input.sym_size(1), "shufflenet_fused: ", name,
              " must be 1-D with C=", input.sym_size(1), " elements, got shape ", t.sym_sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "shufflenet_fused: ", name,
              " must be a floating-point tensor, got ", t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), "shufflenet_fused: ", name, " is on ", t.device(),
              " but input is on ", input.device());
}

// BN parameters and running statistics: 1-D with C elements, on input's
// device, in a dtype F.batch_norm accepts with this input: the input's own, or
// float32 with a half or bfloat16 input (BN layers stay float32 under autocast).
inline void check_bn_tensor(const at::Tensor& t, const char* name, const at::Tensor& input) {
  check_per_channel(t, name, input);
  const at::ScalarType in = input.scalar_type(), dt = t.scalar_type();
  const bool reduced = in == at::kHalf || in == at::kBFloat16;
  TORCH_CHECK(dt == in || (reduced && dt == at::kFloat), "shufflenet_fused: ", name, " must be ", in,
              reduced ? " or float32" : "", " for ", in, " input (as F.batch_norm), got ", dt);
}

inline void check_optional_bn_tensor(const c10::optional<at::Tensor>& t, const char* name, const at::Tensor& input) {
  if (t.has_value() && t->defined()) check_bn_tensor(*t, name, input);
}

// Running statistics are buffers the ops read (eval) or update in place: one
// that requires grad is a parameter by mistake (F.batch_norm rejects it too).
inline void check_running_stat(const at::Tensor& t, const char* name) {
  TORCH_CHECK(!t.requires_grad(), "shufflenet_fused: ", name,
              " must not require grad (running statistics are buffers, updated in place)");
}

// The conv's rules; returns the kernel size.
inline int64_t check_conv_rules(const at::Tensor& input, const at::Tensor& weight, int64_t groups, int64_t stride) {
  TORCH_CHECK(input.dim() == 4, "shufflenet_fused: input must be 4-D (N, C, H, W), got ",
              input.dim(), "-D");
  TORCH_CHECK(is_supported_float(input.scalar_type()),
              "shufflenet_fused: input must be float32, float64, float16 or bfloat16, got ",
              input.scalar_type());
  const c10::SymInt& C = input.sym_size(1);
  TORCH_CHECK(C >= 1, "shufflenet_fused: input must have at least one channel, got shape ", input.sym_sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.sym_size(0) == C && weight.sym_size(1) == 1 &&
                  weight.sym_size(2) == weight.sym_size(3),
              "shufflenet_fused: weight must have shape (C, 1, k, k) with C=", C, ", got ",
              weight.sym_sizes());
  const c10::SymInt& K = weight.sym_size(2);
  TORCH_CHECK(K == 3 || K == 5 || K == 7, "shufflenet_fused: weight kernel size must be 3, 5 or 7, got ", K);
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(), "shufflenet_fused: weight dtype ",
              weight.scalar_type(), " does not match input dtype ", input.scalar_type());
  TORCH_CHECK(weight.device() == input.device(), "shufflenet_fused: weight is on ", weight.device(),
              " but input is on ", input.device());
  TORCH_CHECK(groups >= 1 && C % groups == 0, "shufflenet_fused: groups=", groups,
              " must be >= 1 and divide the channel count C=", C);
  TORCH_CHECK(stride == 1 || stride == 2, "shufflenet_fused: stride must be 1 or 2, got ", stride);
  TORCH_CHECK(input.sym_size(2) >= 1 && input.sym_size(3) >= 1,
              "shufflenet_fused: input spatial size must be at least 1x1, got ", input.sym_size(2), "x",
              input.sym_size(3));
  return K.guard_int(__FILE__, __LINE__);
}

// The output's (N, C, H_out, W_out), symbolic where the input's sizes are.
inline std::vector<c10::SymInt> conv_output_sym_sizes(const at::Tensor& input, int64_t K, int64_t stride) {
  const auto out = [&](const c10::SymInt& in) { return (in + 2 * conv_pad(K) - K) / stride + 1; };
  return {input.sym_size(0), input.sym_size(1), out(input.sym_size(2)), out(input.sym_size(3))};
}

// The geometry of a call whose rules were checked, from its concrete sizes.
inline ConvGeometry conv_geometry(const at::Tensor& input, int64_t K, int64_t stride) {
  ConvGeometry g;
  g.N = input.size(0);
  g.C = input.size(1);
  g.H = input.size(2);
  g.W = input.size(3);
  g.K = K;
  g.stride = stride;
  g.Ho = conv_out_size(g.H, K, stride);
  g.Wo = conv_out_size(g.W, K, stride);
  return g;
}

// channels_last in -> channels_last out (as conv does); anything else is NCHW.
inline at::MemoryFormat output_memory_format(const at::Tensor& input) {
  return input.is_contiguous(at::MemoryFormat::ChannelsLast) &&
                 !input.is_contiguous(at::MemoryFormat::Contiguous)
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

inline void check_training_count(const ConvGeometry& g) {
  TORCH_CHECK(g.N * g.Ho * g.Wo > 1,
              "shufflenet_fused: expected more than 1 value per channel when training, got "
              "N*H_out*W_out=", g.N * g.Ho * g.Wo);
}

inline void check_stats(const at::Tensor& mean, const at::Tensor& invstd, const at::Tensor& input) {
  check_per_channel(mean, "mean", input);
  check_per_channel(invstd, "invstd", input);
}

inline void check_grad_output(const at::Tensor& grad_output, const at::Tensor& input, int64_t K, int64_t stride) {
  const std::vector<c10::SymInt> out = conv_output_sym_sizes(input, K, stride);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.sym_size(0) == out[0] && grad_output.sym_size(1) == out[1] &&
                  grad_output.sym_size(2) == out[2] && grad_output.sym_size(3) == out[3],
              "shufflenet_fused: grad_output must have shape (", out[0], ", ", out[1], ", ", out[2], ", ", out[3],
              "), got ", grad_output.sym_sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(), "shufflenet_fused: grad_output dtype ",
              grad_output.scalar_type(), " does not match input dtype ", input.scalar_type());
  TORCH_CHECK(grad_output.device() == input.device(), "shufflenet_fused: grad_output is on ",
              grad_output.device(), " but input is on ", input.device());
}

// dtype of grad_bn_weight / grad_bn_bias: that of bn_weight when given.
inline at::ScalarType bn_grad_dtype(const c10::optional<at::Tensor>& bn_weight,
                                    const at::Tensor& input) {
  if (bn_weight.has_value() && bn_weight->defined()) return bn_weight->scalar_type();
  return stat_dtype(input.scalar_type());
}

// ------------------------------------------------------------ per op ----

// As F.batch_norm: eps >= 0 (finite), and > 0 with batch statistics.
inline void check_eps(double eps, bool training) {
  TORCH_CHECK(std::isfinite(eps) && eps >= 0, "shufflenet_fused: eps must be a finite number >= 0, got ", eps);
  TORCH_CHECK(!training || eps > 0, "shufflenet_fused: eps must be positive when training (batch statistics), got ",
              eps);
}

// The rules of each op (what the Meta kernels check), then the kernels'
// entry checks: the rules and what needs concrete sizes.

inline int64_t check_eval_rules(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                                const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                                const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps) {
  const int64_t K = check_conv_rules(input, weight, groups, stride);
  check_eps(eps, /*training=*/false);
  check_bn_tensor(running_mean, "running_mean", input);
  check_bn_tensor(running_var, "running_var", input);
  check_running_stat(running_mean, "running_mean");
  check_running_stat(running_var, "running_var");
  check_optional_bn_tensor(bn_weight, "bn_weight", input);
  check_optional_bn_tensor(bn_bias, "bn_bias", input);
  return K;
}

// Without the count of values per channel (N * H_out * W_out > 1), which
// check_train_args adds: on a symbolic batch it would guard on the batch size.
inline int64_t check_train_rules(const at::Tensor& input, const at::Tensor& weight,
                                 const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
                                 int64_t groups, int64_t stride, double eps) {
  const int64_t K = check_conv_rules(input, weight, groups, stride);
  check_eps(eps, /*training=*/true);
  check_optional_bn_tensor(bn_weight, "bn_weight", input);
  check_optional_bn_tensor(bn_bias, "bn_bias", input);
  return K;
}

inline int64_t check_backward_rules(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                                    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean,
                                    const at::Tensor& invstd, int64_t groups, int64_t stride) {
  const int64_t K = check_conv_rules(input, weight, groups, stride);
  check_grad_output(grad_output, input, K, stride);
  check_optional_bn_tensor(bn_weight, "bn_weight", input);
  check_stats(mean, invstd, input);
  return K;
}

inline ConvGeometry check_eval_args(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& running_mean,
                                    const at::Tensor& running_var, const c10::optional<at::Tensor>& bn_weight,
                                    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                                    double eps) {
  return conv_geometry(
      input, check_eval_rules(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps),
      stride);
}

inline ConvGeometry check_train_args(const at::Tensor& input, const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bn_weight,
                                     const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride,
                                     double eps) {
  const ConvGeometry g =
      conv_geometry(input, check_train_rules(input, weight, bn_weight, bn_bias, groups, stride, eps), stride);
  check_training_count(g);
  return g;
}

inline ConvGeometry check_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
                                        const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
                                        int64_t stride) {
  return conv_geometry(
      input, check_backward_rules(grad_output, input, weight, bn_weight, mean, invstd, groups, stride), stride);
}

// count: the values per channel of the batch statistics; checked where it is
// known (a symbolic batch under torch.export is not guarded on).
inline void check_running_stats_args(const at::Tensor& running_mean, const at::Tensor& running_var,
                                     const at::Tensor& mean, const at::Tensor& invstd, const c10::SymInt& count) {
  if (const auto known = count.maybe_as_int())
    TORCH_CHECK(*known > 1, "shufflenet_fused: running statistics need more than 1 value per channel, got ", *known);
  TORCH_CHECK(running_mean.dim() == 1 && running_mean.sym_sizes() == mean.sym_sizes() &&
                  running_var.sym_sizes() == invstd.sym_sizes() && mean.sym_sizes() == invstd.sym_sizes(),
              "shufflenet_fused: running statistics and batch statistics differ in shape: running_mean ",
              running_mean.sym_sizes(), ", running_var ", running_var.sym_sizes(), ", mean ", mean.sym_sizes(),
              ", invstd ", invstd.sym_sizes());
  TORCH_CHECK(running_mean.device() == mean.device() && running_var.device() == mean.device() &&
                  invstd.device() == mean.device(),
              "shufflenet_fused: running statistics and batch statistics are on different devices");
  // Everything checked before either statistic is written: the update is all or nothing.
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{running_mean, "running_mean"},
                                {running_var, "running_var"}, {mean, "mean"}, {invstd, "invstd"}}) {
    TORCH_CHECK(is_supported_float(t.scalar_type()), "shufflenet_fused: ", name,
                " must be float32, float64, float16 or bfloat16, got ", t.scalar_type());
  }
  check_running_stat(running_mean, "running_mean");
  check_running_stat(running_var, "running_var");
}

}  // namespace shufflenet_fused
