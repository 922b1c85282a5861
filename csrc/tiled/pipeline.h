// The sequence of passes behind each op, on ATen tensors, written once for
// any executor:
//   - CudaExec (kernels.cuh) launches the CUDA kernels on the current stream;
//   - EmuExec (csrc/cpu/index_math_check.cpp) runs the same work functions in
//     CPU loops, so the CPU tests check the planning, workspace layout and
//     pass order of the CUDA backend too.
// Every allocation goes through at::empty (CUDA-graph capture safe); nothing
// here synchronises with the host.
//
//   eval      prep(Eval) -> tile<Eval>
//   train     prep(Raw) -> tile<Stats> -> finalize_stats -> tile<Eval>
//   backward  prep(Backward) -> [training: tile<GradStats> -> finalize_grad_stats]
//             -> tile<Dz> -> [frozen: finalize_grad_stats] -> input_grad
//             -> finalize_weight_grad
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/Optional.h>

#include <tuple>
#include <type_traits>

#include "common/kernel_size_dispatch.h"
#include "common/checks.h"
#include "tiled/lane_work.h"

namespace shufflenet_fused {
namespace pipeline {

// ------------------------------------------------------------- arguments ----

// The same checks, in the same order, as the CPU ops.
inline ConvGeometry check_eval_args(const at::Tensor& input, const at::Tensor& weight,
                                    const at::Tensor& running_mean, const at::Tensor& running_var,
                                    const c10::optional<at::Tensor>& bn_weight,
                                    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride) {
  const ConvGeometry g = check_conv_args(input, weight, groups, stride);
  check_per_channel(running_mean, "running_mean", input);
  check_per_channel(running_var, "running_var", input);
  check_optional_per_channel(bn_weight, "bn_weight", input);
  check_optional_per_channel(bn_bias, "bn_bias", input);
  return g;
}

inline ConvGeometry check_train_args(const at::Tensor& input, const at::Tensor& weight,
                                     const c10::optional<at::Tensor>& bn_weight,
                                     const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride) {
  const ConvGeometry g = check_conv_args(input, weight, groups, stride);
  check_optional_per_channel(bn_weight, "bn_weight", input);
  check_optional_per_channel(bn_bias, "bn_bias", input);
  check_training_count(g);
  return g;
}

inline ConvGeometry check_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                                        const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
                                        const at::Tensor& mean, const at::Tensor& invstd, int64_t groups,
                                        int64_t stride) {
  const ConvGeometry g = check_conv_args(input, weight, groups, stride);
  check_grad_output(grad_output, g, input);
  check_optional_per_channel(bn_weight, "bn_weight", input);
  check_stats(mean, invstd, input);
  return g;
}

// Inputs in the layout the kernels read. channels_last input keeps its
// layout (the channels_last kernels read it in place); anything else is made
// NCHW-contiguous once.
struct Prepared {
  at::Tensor x, g, weight;
  at::MemoryFormat format;
  work::Geo geo;
  int64_t groups;
  bool shuffle_last;
};

inline Prepared prepare(const at::Tensor& input, const at::Tensor& weight, const ConvGeometry& cg,
                        int64_t groups, bool shuffle_last, const at::Tensor& grad_output = at::Tensor()) {
  Prepared p;
  p.format = output_memory_format(input);
  const bool cl = p.format == at::MemoryFormat::ChannelsLast;
  p.x = input.contiguous(p.format);
  if (grad_output.defined()) p.g = grad_output.contiguous(p.format);
  p.weight = weight.contiguous();
  p.geo = work::make_geo(cg.N, cg.C, cg.H, cg.W, static_cast<int>(cg.K), static_cast<int>(cg.stride), groups,
                         shuffle_last, cl);
  p.groups = groups;
  p.shuffle_last = shuffle_last;
  return p;
}

template <typename acc_t>
at::TensorOptions acc_options(const at::Tensor& like) {
  return like.options().dtype(c10::CppTypeToScalarType<acc_t>::value).memory_format(at::MemoryFormat::Contiguous);
}

// A per-channel tensor as a contiguous acc_t array (no copy when it already
// is one); nullptr when absent. `holder` keeps a converted copy alive.
template <typename acc_t>
const acc_t* per_channel_ptr(const c10::optional<at::Tensor>& t, at::Tensor& holder) {
  if (!t.has_value() || !t->defined()) return nullptr;
  holder = t->detach().to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
  return holder.data_ptr<acc_t>();
}

template <typename acc_t>
const acc_t* per_channel_ptr(const at::Tensor& t, at::Tensor& holder) {
  return per_channel_ptr<acc_t>(c10::optional<at::Tensor>(t), holder);
}

inline work::TilePlan plan_tile(const work::Geo& g, int acc_bytes) {
  return g.channels_last ? work::plan_cl_tile(g) : work::plan_nchw_tile(g, acc_bytes);
}

inline work::InputGradPlan plan_input_grad(const work::Geo& g, int acc_bytes) {
  return g.channels_last ? work::plan_cl_input_grad(g) : work::plan_nchw_input_grad(g, acc_bytes);
}

template <typename scalar_t, typename acc_t>
work::PrepArgs<scalar_t, acc_t> prep_args(const Prepared& pr, at::Tensor& table) {
  work::PrepArgs<scalar_t, acc_t> a{};
  a.weight = pr.weight.data_ptr<scalar_t>();
  a.KK = pr.geo.K * pr.geo.K;
  a.C = pr.geo.C;
  a.groups = pr.groups;
  a.shuffle_last = pr.shuffle_last;
  a.table = table.data_ptr<acc_t>();
  return a;
}

template <typename scalar_t, typename acc_t>
work::FinalizeArgs<scalar_t, acc_t> finalize_args(const Prepared& pr, const work::TilePlan& tp) {
  work::FinalizeArgs<scalar_t, acc_t> a{};
  a.slots = tp.slots;
  a.C = pr.geo.C;
  a.groups = pr.groups;
  a.KK = pr.geo.K * pr.geo.K;
  a.shuffle_last = pr.shuffle_last;
  a.weight = pr.weight.data_ptr<scalar_t>();
  return a;
}

// ------------------------------------------------------------------ ops ----

template <typename Exec, typename scalar_t>
at::Tensor run_eval(Exec& ex, const Prepared& pr, const at::Tensor& running_mean, const at::Tensor& running_var,
                    const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
                    double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const work::Geo& g = pr.geo;
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, pr.x.options().memory_format(pr.format));
  if (y.numel() == 0) return y;
  ex.fresh(y);

  at::Tensor table = at::empty({(g.K * g.K + work::kCoefRows) * g.C}, acc_options<acc_t>(pr.x));
  ex.fresh(table);
  at::Tensor h_mean, h_var, h_gamma, h_beta;
  auto pa = prep_args<scalar_t, acc_t>(pr, table);
  pa.mean = per_channel_ptr<acc_t>(running_mean, h_mean);
  pa.var = per_channel_ptr<acc_t>(running_var, h_var);
  pa.gamma = per_channel_ptr<acc_t>(bn_weight, h_gamma);
  pa.beta = per_channel_ptr<acc_t>(bn_bias, h_beta);
  pa.eps = eps;
  ex.prep(work::Prep::Eval, pa);

  work::TileArgs<scalar_t, acc_t> ta{};
  ta.x = pr.x.data_ptr<scalar_t>();
  ta.y = y.data_ptr<scalar_t>();
  ta.table = table.data_ptr<acc_t>();
  ta.geo = g;
  const work::TilePlan tp = plan_tile(g, sizeof(acc_t));
  dispatch_kernel_size(g.K, g.S, [&](auto k, auto s) {
    ex.template tile<work::Mode::Eval, decltype(k)::value, decltype(s)::value>(ta, tp);
  });
  return y;
}

template <typename Exec, typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_train(Exec& ex, const Prepared& pr,
                                                         const c10::optional<at::Tensor>& bn_weight,
                                                         const c10::optional<at::Tensor>& bn_bias, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const work::Geo& g = pr.geo;
  const auto acc_opts = acc_options<acc_t>(pr.x);
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, pr.x.options().memory_format(pr.format));
  at::Tensor mean = at::empty({g.C}, acc_opts);
  at::Tensor invstd = at::empty({g.C}, acc_opts);
  if (y.numel() == 0) return {y, mean, invstd};
  ex.fresh(y);
  ex.fresh(mean);
  ex.fresh(invstd);

  const int KK = g.K * g.K;
  at::Tensor table = at::empty({(KK + work::kCoefRows) * g.C}, acc_opts);
  ex.fresh(table);
  ex.prep(work::Prep::Raw, prep_args<scalar_t, acc_t>(pr, table));

  const work::TilePlan tp = plan_tile(g, sizeof(acc_t));
  at::Tensor part = at::empty({3 * tp.slots * g.C}, acc_opts);
  ex.fresh(part);
  work::TileArgs<scalar_t, acc_t> ta{};
  ta.x = pr.x.data_ptr<scalar_t>();
  ta.table = table.data_ptr<acc_t>();
  ta.part = part.data_ptr<acc_t>();
  ta.geo = g;

  at::Tensor h_gamma, h_beta;
  auto fa = finalize_args<scalar_t, acc_t>(pr, tp);
  fa.part = part.data_ptr<acc_t>();
  fa.eps = eps;
  fa.gamma = per_channel_ptr<acc_t>(bn_weight, h_gamma);
  fa.beta = per_channel_ptr<acc_t>(bn_bias, h_beta);
  fa.mean_out = mean.data_ptr<acc_t>();
  fa.invstd_out = invstd.data_ptr<acc_t>();
  fa.table = table.data_ptr<acc_t>();

  dispatch_kernel_size(g.K, g.S, [&](auto k, auto s) {
    constexpr int K = decltype(k)::value, S = decltype(s)::value;
    ex.template tile<work::Mode::Stats, K, S>(ta, tp);
    ex.finalize_stats(fa);  // mean, invstd; folds them into the table
    ta.y = y.data_ptr<scalar_t>();
    ex.template tile<work::Mode::Eval, K, S>(ta, tp);
  });
  return {y, mean, invstd};
}

template <typename Exec, typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_backward(
    Exec& ex, const Prepared& pr, const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean,
    const at::Tensor& invstd, bool training, at::ScalarType bn_dtype) {
  using acc_t = at::opmath_type<scalar_t>;
  const work::Geo& g = pr.geo;
  const auto acc_opts = acc_options<acc_t>(pr.x);
  const int KK = g.K * g.K;
  at::Tensor grad_x = at::empty({g.N, g.C, g.H, g.W}, pr.x.options().memory_format(pr.format));
  at::Tensor grad_w = at::empty({g.C, 1, g.K, g.K}, pr.weight.options());
  at::Tensor grad_gamma = at::empty({g.C}, acc_opts);
  at::Tensor grad_beta = at::empty({g.C}, acc_opts);
  if (g.N * g.Ho * g.Wo == 0 || g.C == 0) {
    grad_x.zero_();
    grad_w.zero_();
    grad_gamma.zero_();
    grad_beta.zero_();
    return {grad_x, grad_w, grad_gamma.to(bn_dtype), grad_beta.to(bn_dtype)};
  }
  ex.fresh(grad_x);
  ex.fresh(grad_w);
  ex.fresh(grad_gamma);
  ex.fresh(grad_beta);

  at::Tensor table = at::empty({(KK + work::kCoefRows) * g.C}, acc_opts);
  ex.fresh(table);
  at::Tensor h_mean, h_invstd, h_gamma;
  auto pa = prep_args<scalar_t, acc_t>(pr, table);
  pa.mean = per_channel_ptr<acc_t>(mean, h_mean);
  pa.invstd = per_channel_ptr<acc_t>(invstd, h_invstd);
  pa.gamma = per_channel_ptr<acc_t>(bn_weight, h_gamma);
  ex.prep(work::Prep::Backward, pa);

  const work::TilePlan tp = plan_tile(g, sizeof(acc_t));
  at::Tensor part_g = at::empty({2 * tp.slots * g.C}, acc_opts);
  at::Tensor part_w = at::empty({KK * tp.slots * g.C}, acc_opts);
  // dz at the lane channel, in the kernel's layout (output-shaped).
  at::Tensor dz = at::empty({g.N * g.C * g.Ho * g.Wo}, acc_opts);
  ex.fresh(part_g);
  ex.fresh(part_w);
  ex.fresh(dz);

  work::TileArgs<scalar_t, acc_t> ta{};
  ta.x = pr.x.data_ptr<scalar_t>();
  ta.g = pr.g.data_ptr<scalar_t>();
  ta.dz = dz.data_ptr<acc_t>();
  ta.table = table.data_ptr<acc_t>();
  ta.geo = g;

  auto fa = finalize_args<scalar_t, acc_t>(pr, tp);
  fa.part = part_g.data_ptr<acc_t>();
  fa.gamma = pa.gamma;
  fa.invstd = pa.invstd;
  fa.count = static_cast<double>(g.N * g.Ho * g.Wo);
  fa.training = training;
  fa.grad_gamma = grad_gamma.data_ptr<acc_t>();
  fa.grad_beta = grad_beta.data_ptr<acc_t>();
  fa.table = table.data_ptr<acc_t>();

  work::InputGradArgs<scalar_t, acc_t> ia{};
  ia.dz = dz.data_ptr<acc_t>();
  ia.table = table.data_ptr<acc_t>();
  ia.gx = grad_x.data_ptr<scalar_t>();
  ia.geo = g;
  const work::InputGradPlan ip = plan_input_grad(g, sizeof(acc_t));

  dispatch_kernel_size(g.K, g.S, [&](auto k, auto s) {
    constexpr int K = decltype(k)::value, S = decltype(s)::value;
    if (training) {
      // Batch statistics: dz needs sum(g) and sum(g * (z - mean)) first.
      ta.part = part_g.data_ptr<acc_t>();
      ex.template tile<work::Mode::GradStats, K, S>(ta, tp);
      ex.finalize_grad_stats(fa);  // grad_bn_*, and A, B, D into the table
      ta.part = part_w.data_ptr<acc_t>();
      ta.part_g = nullptr;
      ex.template tile<work::Mode::Dz, K, S>(ta, tp);
    } else {
      // Frozen statistics: dz = A * g is known up front, so one pass also
      // gathers the sums for grad_bn_*.
      ta.part = part_w.data_ptr<acc_t>();
      ta.part_g = part_g.data_ptr<acc_t>();
      ex.template tile<work::Mode::Dz, K, S>(ta, tp);
      ex.finalize_grad_stats(fa);
    }
    ex.template input_grad<K, S>(ia, ip);
  });
  auto fw = fa;
  fw.part = part_w.data_ptr<acc_t>();
  fw.grad_w = grad_w.data_ptr<scalar_t>();
  ex.finalize_weight_grad(fw);
  return {grad_x, grad_w, grad_gamma.to(bn_dtype), grad_beta.to(bn_dtype)};
}

}  // namespace pipeline
}  // namespace shufflenet_fused
