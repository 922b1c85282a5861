// CPU entry points of the fused channel shuffle + depthwise conv + BatchNorm
// ops: argument checks, BN parameter folding, output allocation, and the call
// into the kernel table of the ISA in effect (kernel_table.h, cpu_isa.cpp).
//
// The eval op has a native channels_last kernel; the training ops compute
// channels_last inputs through NCHW copies (in_format; a native kernel is
// future work).
// Other strided inputs go through an NCHW copy. Outputs keep the input's
// memory format (output_memory_format). Conv weights with a NaN or Inf run
// through ATen as the reference does (nonfinite_weight_ops.h).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <vector>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/checks.h"
#include "cpu/host_values.h"
#include "cpu/kernel_table.h"
#include "cpu/nonfinite_weight_ops.h"
#include "cpu/plane_tiles.h"
#include "cpu/reused_tensor.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// NCHW staging copies that live only during one op call (the training ops'
// NCHW views of channels_last tensors) come from `kStagingSlots` per-thread
// reused buffers (reused_tensor.h) instead of fresh allocations. Each slot
// keeps the largest buffer it has needed up to kKeptStagingBytes (a ShuffleNet
// activation at batch 64 fits); a larger one is allocated for the call and
// freed when it returns.
constexpr int kStagingSlots = 3;
constexpr int64_t kKeptStagingBytes = int64_t(128) << 20;

at::Tensor staging_buffer(int slot, at::IntArrayRef sizes, const at::TensorOptions& options) {
  thread_local std::array<at::Tensor, kStagingSlots> cache;
  if (c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize()) > kKeptStagingBytes)
    return at::empty(sizes, options.memory_format(at::MemoryFormat::Contiguous));
  return reused_tensor(cache[slot], sizes, options);
}

// `t` in memory format `format`. float32 NCHW <-> channels_last goes through
// the ISA's tiled transpose (relayout), several times faster here than
// Tensor::contiguous; anything else through contiguous(). With `slot` >= 0
// the result is an NCHW staging buffer (see staging_buffer), valid until the
// op returns.
at::Tensor in_format(const at::Tensor& t, at::MemoryFormat format, int slot = -1) {
  if (t.is_contiguous(format)) return t;
  const bool swap = t.dim() == 4 && t.scalar_type() == at::kFloat &&
                    (t.is_contiguous() || t.is_contiguous(at::MemoryFormat::ChannelsLast));
  if (!swap) return t.contiguous(format);
  at::Tensor out = slot >= 0 && format == at::MemoryFormat::Contiguous
                       ? staging_buffer(slot, t.sizes(), t.options())
                       : at::empty(t.sizes(), t.options().memory_format(format));
  active_kernels().relayout(RelayoutParams{t, out});
  return out;
}

// Whether an op on `input` computes its output in an NCHW staging buffer and
// returns a channels_last copy of it (float32 channels_last input).
bool stages_output(const at::Tensor& input) {
  return input.scalar_type() == at::kFloat && output_memory_format(input) == at::MemoryFormat::ChannelsLast;
}

// The NCHW buffer a kernel writes the op's output into.
at::Tensor nchw_output(const at::Tensor& input, at::IntArrayRef sizes, int slot) {
  return stages_output(input) ? staging_buffer(slot, sizes, input.options()) : at::empty(sizes, input.options());
}

// The op's output from the kernel's NCHW result, in input's memory format;
// never a staging buffer (those are reused by the next call).
at::Tensor finish_output(const at::Tensor& nchw, const at::Tensor& input) {
  if (!stages_output(input)) return in_format(nchw, output_memory_format(input));
  at::Tensor out = at::empty(nchw.sizes(), nchw.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (nchw.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    out.copy_(nchw);  // C == 1 or a 1x1 output: both layouts are the same bytes
  } else {
    active_kernels().relayout(RelayoutParams{nchw, out});
  }
  return out;
}

// y[:, o] = y[:, o] * scale[p] + shift[p], p the parameter channel of output o.
void apply_bn_after_conv(at::Tensor& y, const std::vector<double>& scale, const std::vector<double>& shift,
                         const ChannelMap& map) {
  const int64_t C = static_cast<int64_t>(scale.size());
  std::vector<double> a(C), b(C);
  for (int64_t o = 0; o < C; ++o) {
    const int64_t p = map.lane_of_output(o).param;
    a[o] = scale[p];
    b[o] = shift[p];
  }
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor av = at::from_blob(a.data(), {1, C, 1, 1}, opts).to(stat_dtype(y.scalar_type()));
  const at::Tensor bv = at::from_blob(b.data(), {1, C, 1, 1}, opts).to(stat_dtype(y.scalar_type()));
  y.copy_(y.to(av.scalar_type()).mul_(av).add_(bv));
}

at::Tensor dwconv_bn_eval_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& running_mean, const at::Tensor& running_var,
                              const c10::optional<at::Tensor>& bn_weight,
                              const c10::optional<at::Tensor>& bn_bias, int64_t groups,
                              int64_t stride, double eps, bool shuffle_last) {
  const ConvGeometry g =
      check_eval_args(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps);
  const std::vector<double> w = read_values(weight);
  if (has_nonfinite(w))
    return nonfinite_weight_eval(input, weight, running_mean, running_var, bn_weight, bn_bias, groups, stride, eps,
                                 shuffle_last);

  // Fold BN into y = conv * scale + shift, per parameter channel.
  const std::vector<double> mean = read_values_or(running_mean, g.C, 0.0);
  const std::vector<double> var = read_values_or(running_var, g.C, 1.0);
  const std::vector<double> gamma = read_values_or(bn_weight, g.C, 1.0);
  const std::vector<double> beta = read_values_or(bn_bias, g.C, 0.0);
  std::vector<double> scale(g.C), shift(g.C);
  // The kernels may fold scale into the taps (conv(x, w * scale)), which gives
  // another NaN/Inf pattern than conv(x, w) * scale when scale or shift is not
  // finite (eps = 0 with a zero variance, an infinite gamma): then run the
  // plain conv and apply BN after it, as F.batch_norm does.
  bool foldable = true;
  for (int64_t c = 0; c < g.C; ++c) {
    const ScaleShift bn = fold_running_stats(mean[c], var[c], gamma[c], beta[c], eps);
    scale[c] = bn.scale;
    shift[c] = bn.shift;
    foldable = foldable && bn.foldable();
  }

  const at::MemoryFormat format = output_memory_format(input);
  const at::Tensor x = input.contiguous(format);
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, x.options().memory_format(format));
  const std::vector<double> ones(foldable ? 0 : g.C, 1.0), zeros(foldable ? 0 : g.C, 0.0);
  const EvalParams p{x, w, foldable ? scale : ones, foldable ? shift : zeros, g, groups, shuffle_last, y};
  if (format == at::MemoryFormat::ChannelsLast) {
    active_kernels().eval_channels_last(p);  // row by row: memory bounded by a row
  } else if (runs_in_tiles(g)) {
    eval_in_tiles(p);
  } else {
    active_kernels().eval(p);
  }
  if (!foldable) apply_bn_after_conv(y, scale, shift, ChannelMap(g.C, groups, shuffle_last));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dwconv_bn_train_cpu(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
    bool shuffle_last) {
  const ConvGeometry g = check_train_args(input, weight, bn_weight, bn_bias, groups, stride, eps);
  const std::vector<double> w = read_values(weight);
  if (has_nonfinite(w)) return nonfinite_weight_train(input, weight, bn_weight, bn_bias, groups, stride, eps, shuffle_last);

  const std::vector<double> gamma = read_values_or(bn_weight, g.C, 1.0);
  const std::vector<double> beta = read_values_or(bn_bias, g.C, 0.0);
  const at::Tensor x = in_format(input, at::MemoryFormat::Contiguous, /*slot=*/0);
  at::Tensor y = nchw_output(input, {g.N, g.C, g.Ho, g.Wo}, /*slot=*/1);
  const auto stat_options = x.options().dtype(stat_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({g.C}, stat_options);
  at::Tensor invstd = at::empty({g.C}, stat_options);
  const TrainParams p{x, w, gamma, beta, g, groups, eps, shuffle_last, y, mean, invstd};
  if (train_runs_in_tiles(g, x.scalar_type())) {
    train_in_tiles(p);
  } else {
    active_kernels().train(p);
  }
  return {finish_output(y, input), mean, invstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dwconv_bn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd,
    int64_t groups, int64_t stride, bool shuffle_last, bool training) {
  const ConvGeometry g =
      check_backward_args(grad_output, input, weight, bn_weight, mean, invstd, groups, stride);
  const std::vector<double> w = read_values(weight);
  if (has_nonfinite(w))
    return nonfinite_weight_backward(grad_output, input, weight, bn_weight, mean, invstd, groups, stride, shuffle_last,
                                     training);

  const std::vector<double> gamma = read_values_or(bn_weight, g.C, 1.0);
  const std::vector<double> mean_v = read_values_or(mean, g.C, 0.0);
  const std::vector<double> invstd_v = read_values_or(invstd, g.C, 1.0);
  const at::Tensor x = in_format(input, at::MemoryFormat::Contiguous, /*slot=*/0);
  const at::Tensor go = in_format(grad_output, at::MemoryFormat::Contiguous, /*slot=*/1);
  at::Tensor grad_x = nchw_output(input, x.sizes(), /*slot=*/2);
  std::vector<double> grad_w(g.C * g.K * g.K, 0.0), grad_gamma(g.C, 0.0), grad_beta(g.C, 0.0);
  if (g.N * g.Ho * g.Wo > 0) {
    const BackwardParams p{go, x, w, gamma, mean_v, invstd_v, g, groups, shuffle_last, training,
                           grad_x, grad_w, grad_gamma, grad_beta};
    if (backward_runs_in_tiles(g, x.scalar_type())) {
      backward_in_tiles(p);
    } else {
      active_kernels().backward(p);
    }
  } else {
    grad_x.zero_();
  }
  const at::ScalarType bn_dtype = bn_grad_dtype(bn_weight, input);
  return {finish_output(grad_x, input),
          values_to_tensor(grad_w, {g.C, 1, g.K, g.K}, weight.scalar_type()),
          values_to_tensor(grad_gamma, {g.C}, bn_dtype), values_to_tensor(grad_beta, {g.C}, bn_dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, CPU, m) {
  m.impl("dwconv_bn_eval", &dwconv_bn_eval_cpu);
  m.impl("dwconv_bn_train", &dwconv_bn_train_cpu);
  m.impl("dwconv_bn_backward", &dwconv_bn_backward_cpu);
}

}  // namespace cpu
}  // namespace shufflenet_fused
