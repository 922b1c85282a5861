// BatchNorm running-statistic update from a training forward's (mean, invstd),
// as F.batch_norm does it: (1 - momentum) * old + momentum * new, with the
// unbiased batch variance. Written with ATen ops, so one kernel serves every
// device (CompositeExplicitAutograd); CPU has its own single-loop kernel
// (cpu/running_stats_cpu.cpp). One C++ op instead of a handful of Python calls
// per training step.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "running_stats_checks.h"

namespace shufflenet_fused {
namespace {

void update_running_stats(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                          const at::Tensor& invstd, double momentum, double eps, int64_t count) {
  check_running_stats_args(running_mean, running_var, mean, invstd, count);
  at::NoGradGuard no_grad;
  // var = 1/invstd^2 - eps (biased), then Bessel's correction.
  const at::Tensor var = (invstd.pow(-2) - eps) * (static_cast<double>(count) / static_cast<double>(count - 1));
  running_mean.mul_(1.0 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
  running_var.mul_(1.0 - momentum).add_(var.to(running_var.scalar_type()), momentum);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  m.def(
      "update_running_stats(Tensor(a!) running_mean, Tensor(b!) running_var, Tensor mean, "
      "Tensor invstd, float momentum, float eps, int count) -> ()");
}

TORCH_LIBRARY_IMPL(shufflenet_fused, CompositeExplicitAutograd, m) {
  m.impl("update_running_stats", &update_running_stats);
}

}  // namespace shufflenet_fused
