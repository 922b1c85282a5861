// The sequence of passes behind each op, on ATen tensors, written once for
// any executor:
//   - CudaExec (csrc/cuda/launcher.cuh) launches the CUDA kernels on the
//     current stream;
//   - EmuExec (csrc/tiled/emulator_test_ops.cpp) runs the same lane work in
//     CPU loops, so the CPU tests check the planning, workspace layout and
//     pass order of the CUDA backend too.
// The callers check the arguments first (common/checks.h).
// Every allocation goes through at::empty (CUDA-graph capture safe); nothing
// here synchronises with the host.
//
//   eval      prep(Eval) -> walk_eval
//   train     prep(Raw) -> tile<Stats> -> finalize_stats -> walk_eval
//   backward  prep(Backward) -> [training: tile<GradStats> -> finalize_grad_stats]
//             -> tile<Dz> -> [frozen: finalize_grad_stats] -> input_grad
//             -> finalize_weight_grad
// (prep and tile<TilePass>: tiled/lane_table.h, tiled/lane_work.h; walk_eval:
// tiled/walk_eval.h; finalize_*: tiled/finalize.h.)
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <tuple>

#include "common/checks.h"
#include "common/kernel_size_dispatch.h"
#include "tiled/finalize.h"
#include "tiled/lane_table.h"
#include "tiled/lane_work.h"
#include "tiled/tile_plan.h"
#include "tiled/walk_eval.h"

namespace shufflenet_fused {
namespace tiled {

// ------------------------------------------------------------ arguments ----

// Inputs in the layout the kernels read. channels_last input keeps its
// layout (the channels_last kernels read it in place); anything else is made
// NCHW-contiguous once.
struct Prepared {
  at::Tensor x, g, weight;
  at::MemoryFormat format;
  Geo geo;
};

inline Prepared prepare(const at::Tensor& input, const at::Tensor& weight, const ConvGeometry& cg,
                        int64_t groups, bool shuffle_last, const at::Tensor& grad_output = at::Tensor()) {
  Prepared p;
  p.format = output_memory_format(input);
  const bool cl = p.format == at::MemoryFormat::ChannelsLast;
  p.x = input.contiguous(p.format);
  if (grad_output.defined()) p.g = grad_output.contiguous(p.format);
  p.weight = weight.contiguous();
  p.geo = make_geo(cg.N, cg.C, cg.H, cg.W, static_cast<int>(cg.K), static_cast<int>(cg.stride), groups,
                   shuffle_last, cl);
  return p;
}

// An (N, C, H, W) tensor of the input's dtype in the op's layout: y, grad_x.
inline at::Tensor new_activation(const Prepared& pr, int64_t H, int64_t W) {
  return at::empty({pr.geo.N, pr.geo.C, H, W}, pr.x.options().memory_format(pr.format));
}

template <typename acc_t>
at::TensorOptions acc_options(const at::Tensor& like) {
  return like.options().dtype(c10::CppTypeToScalarType<acc_t>::value).memory_format(at::MemoryFormat::Contiguous);
}

// A flat acc_t workspace of n elements, handed to the executor first (the
// emulator poisons it, so an element no pass writes shows up in the tests).
template <typename Exec>
at::Tensor workspace(Exec& ex, int64_t n, const at::TensorOptions& acc_opts) {
  at::Tensor t = at::empty({n}, acc_opts);
  ex.fresh(t);
  return t;
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

template <typename scalar_t, typename acc_t>
PrepArgs<scalar_t, acc_t> prep_args(const Prepared& pr, at::Tensor& table) {
  PrepArgs<scalar_t, acc_t> a{};
  a.weight = pr.weight.data_ptr<scalar_t>();
  a.KK = pr.geo.K * pr.geo.K;
  a.C = pr.geo.C;
  a.groups = pr.geo.groups;
  a.shuffle_last = pr.geo.shuffle_last;
  a.table = table.data_ptr<acc_t>();
  return a;
}

template <typename scalar_t, typename acc_t>
TileArgs<scalar_t, acc_t> tile_args(const Prepared& pr, at::Tensor& table) {
  TileArgs<scalar_t, acc_t> a{};
  a.x = pr.x.data_ptr<scalar_t>();
  a.table = table.data_ptr<acc_t>();
  a.geo = pr.geo;
  return a;
}

template <typename acc_t>
Partials<acc_t> partials(const Prepared& pr, const TilePlan& tp, at::Tensor& part) {
  return Partials<acc_t>{part.data_ptr<acc_t>(), tp.slots, pr.geo.C, pr.geo.groups, pr.geo.shuffle_last};
}

// ------------------------------------------------------------------ ops ----

template <typename Exec, typename scalar_t>
at::Tensor run_eval(Exec& ex, const Prepared& pr, const at::Tensor& running_mean, const at::Tensor& running_var,
                    const c10::optional<at::Tensor>& bn_weight, const c10::optional<at::Tensor>& bn_bias,
                    double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geo& g = pr.geo;
  at::Tensor y = new_activation(pr, g.Ho, g.Wo);
  if (y.numel() == 0) return y;
  ex.fresh(y);

  at::Tensor table = workspace(ex, (g.K * g.K + kCoefRows) * g.C, acc_options<acc_t>(pr.x));
  at::Tensor h_mean, h_var, h_gamma, h_beta;
  auto pa = prep_args<scalar_t, acc_t>(pr, table);
  pa.mean = per_channel_ptr<acc_t>(running_mean, h_mean);
  pa.var = per_channel_ptr<acc_t>(running_var, h_var);
  pa.gamma = per_channel_ptr<acc_t>(bn_weight, h_gamma);
  pa.beta = per_channel_ptr<acc_t>(bn_bias, h_beta);
  pa.eps = eps;
  ex.prep(Prep::Eval, pa);

  auto ta = tile_args<scalar_t, acc_t>(pr, table);
  ta.y = y.data_ptr<scalar_t>();
  const WalkPlan wp = plan_walk(g, Exec::kWalkMinUnits);
  dispatch_kernel_size(g.K, g.S, [&](auto k, auto s) {
    ex.template walk_eval<decltype(k)::value, decltype(s)::value>(ta, wp);
  });
  return y;
}

template <typename Exec, typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor> run_train(Exec& ex, const Prepared& pr,
                                                         const c10::optional<at::Tensor>& bn_weight,
                                                         const c10::optional<at::Tensor>& bn_bias, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geo& g = pr.geo;
  const auto acc_opts = acc_options<acc_t>(pr.x);
  at::Tensor y = new_activation(pr, g.Ho, g.Wo);
  at::Tensor mean = at::empty({g.C}, acc_opts);
  at::Tensor invstd = at::empty({g.C}, acc_opts);
  if (y.numel() == 0) return {y, mean, invstd};
  ex.fresh(y);
  ex.fresh(mean);
  ex.fresh(invstd);

  const int KK = g.K * g.K;
  at::Tensor table = workspace(ex, (KK + kCoefRows) * g.C, acc_opts);
  ex.prep(Prep::Raw, prep_args<scalar_t, acc_t>(pr, table));

  const TilePlan tp = plan_tile(g, sizeof(acc_t), Exec::kBlockMinUnits);
  at::Tensor part = workspace(ex, 3 * tp.slots * g.C, acc_opts);
  auto ta = tile_args<scalar_t, acc_t>(pr, table);
  ta.part = part.data_ptr<acc_t>();

  at::Tensor h_gamma, h_beta;
  FinalizeStatsArgs<scalar_t, acc_t> fa{};
  fa.in = partials<acc_t>(pr, tp, part);
  fa.KK = KK;
  fa.eps = eps;
  fa.weight = pr.weight.data_ptr<scalar_t>();
  fa.gamma = per_channel_ptr<acc_t>(bn_weight, h_gamma);
  fa.beta = per_channel_ptr<acc_t>(bn_bias, h_beta);
  fa.mean_out = mean.data_ptr<acc_t>();
  fa.invstd_out = invstd.data_ptr<acc_t>();
  fa.table = table.data_ptr<acc_t>();

  dispatch_kernel_size(g.K, g.S, [&](auto k, auto s) {
    constexpr int K = decltype(k)::value, S = decltype(s)::value;
    ex.template tile<TilePass::Stats, K, S>(ta, tp);
    ex.finalize_stats(fa);  // mean, invstd; folds them into the table
    ta.y = y.data_ptr<scalar_t>();
    ex.template walk_eval<K, S>(ta, plan_walk(g, Exec::kWalkMinUnits));
  });
  return {y, mean, invstd};
}

template <typename Exec, typename scalar_t>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> run_backward(
    Exec& ex, const Prepared& pr, const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean,
    const at::Tensor& invstd, bool training, at::ScalarType bn_dtype) {
  using acc_t = at::opmath_type<scalar_t>;
  const Geo& g = pr.geo;
  const auto acc_opts = acc_options<acc_t>(pr.x);
  const int KK = g.K * g.K;
  at::Tensor grad_x = new_activation(pr, g.H, g.W);
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

  at::Tensor table = workspace(ex, (KK + kCoefRows) * g.C, acc_opts);
  at::Tensor h_mean, h_invstd, h_gamma;
  auto pa = prep_args<scalar_t, acc_t>(pr, table);
  pa.mean = per_channel_ptr<acc_t>(mean, h_mean);
  pa.invstd = per_channel_ptr<acc_t>(invstd, h_invstd);
  pa.gamma = per_channel_ptr<acc_t>(bn_weight, h_gamma);
  ex.prep(Prep::Backward, pa);

  const TilePlan tp = plan_tile(g, sizeof(acc_t), Exec::kBlockMinUnits);
  at::Tensor part_g = workspace(ex, 2 * tp.slots * g.C, acc_opts);
  at::Tensor part_w = workspace(ex, KK * tp.slots * g.C, acc_opts);
  // dz at the lane channel, in the kernel's layout (output-shaped).
  at::Tensor dz = workspace(ex, g.N * g.C * g.Ho * g.Wo, acc_opts);

  auto ta = tile_args<scalar_t, acc_t>(pr, table);
  ta.g = pr.g.data_ptr<scalar_t>();
  ta.dz = dz.data_ptr<acc_t>();
  ta.training = training;

  FinalizeGradStatsArgs<acc_t> fg{};
  fg.in = partials<acc_t>(pr, tp, part_g);
  fg.KK = KK;
  fg.gamma = pa.gamma;
  fg.invstd = pa.invstd;
  fg.count = static_cast<double>(g.N * g.Ho * g.Wo);
  fg.training = training;
  fg.grad_gamma = grad_gamma.data_ptr<acc_t>();
  fg.grad_beta = grad_beta.data_ptr<acc_t>();
  fg.table = table.data_ptr<acc_t>();

  InputGradArgs<scalar_t, acc_t> ia{};
  ia.dz = dz.data_ptr<acc_t>();
  ia.table = table.data_ptr<acc_t>();
  ia.gx = grad_x.data_ptr<scalar_t>();
  ia.geo = g;
  const InputGradPlan ip = plan_input_grad(g, sizeof(acc_t));

  dispatch_kernel_size(g.K, g.S, [&](auto k, auto s) {
    constexpr int K = decltype(k)::value, S = decltype(s)::value;
    if (training) {
      // Batch statistics: dz needs sum(g) and sum(g * (z - mean)) first.
      ta.part = part_g.data_ptr<acc_t>();
      ex.template tile<TilePass::GradStats, K, S>(ta, tp);
      ex.finalize_grad_stats(fg);  // grad_bn_*, and A, B, D into the table
      ta.part = part_w.data_ptr<acc_t>();
      ta.part_g = nullptr;
      ex.template tile<TilePass::Dz, K, S>(ta, tp);
    } else {
      // Frozen statistics: dz = A * g is known up front, so one pass also
      // gathers the sums for grad_bn_*.
      ta.part = part_w.data_ptr<acc_t>();
      ta.part_g = part_g.data_ptr<acc_t>();
      ex.template tile<TilePass::Dz, K, S>(ta, tp);
      ex.finalize_grad_stats(fg);
    }
    ex.template input_grad<K, S>(ia, ip);
  });
  FinalizeWeightGradArgs<scalar_t, acc_t> fw{};
  fw.in = partials<acc_t>(pr, tp, part_w);
  fw.KK = KK;
  fw.grad_w = grad_w.data_ptr<scalar_t>();
  ex.finalize_weight_grad(fw);
  return {grad_x, grad_w, grad_gamma.to(bn_dtype), grad_beta.to(bn_dtype)};
}

}  // namespace tiled
}  // namespace shufflenet_fused
