// BatchNorm running-statistic update from a training forward's (mean, invstd),
// as F.batch_norm does it: (1 - momentum) * old + momentum * new, with the
// unbiased batch variance. Written with ATen ops, so one kernel serves every
// device (CompositeExplicitAutograd); CPU has its own single-loop kernel
// (cpu/running_stats_cpu.cpp). Both take the formulas from common/bn_math.h.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "common/bn_math.h"
#include "common/checks.h"

namespace shufflenet_fused {
namespace {

void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                          const at::Tensor& invstd, double momentum, double eps, c10::SymInt count) {
  check_running_stats_args(running_mean, running_var, mean, invstd, count);
  at::NoGradGuard no_grad;
  // In the running statistics' own dtype, as F.batch_norm: no double copies per step.
  const at::Tensor var = unbiased_var_from_invstd(invstd, eps, static_cast<double>(count.expect_int()));
  running_mean.copy_(running_average(running_mean, mean.to(running_mean.scalar_type()), momentum));
  running_var.copy_(running_average(running_var, var.to(running_var.scalar_type()), momentum));
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  m.def(
      "update_running_stats(Tensor(a!) running_mean, Tensor(b!) running_var, Tensor mean, "
      "Tensor invstd, float momentum, float eps, SymInt count) -> ()");
}

TORCH_LIBRARY_IMPL(shufflenet_fused, CompositeExplicitAutograd, m) {
  m.impl("update_running_stats", &update_running_stats);
}

}  // namespace shufflenet_fused
