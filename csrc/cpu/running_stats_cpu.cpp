// CPU kernel of update_running_stats: the same update as the composite ATen
// version in ../running_stats.cpp (which still serves every other device),
// as one loop instead of seven small tensor ops: at batch 1 those cost more
// than the whole training forward's arithmetic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../running_stats_checks.h"
#include "host_values.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

void update_running_stats_cpu(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                              const at::Tensor& invstd, double momentum, double eps, int64_t count) {
  check_running_stats_args(running_mean, running_var, mean, invstd, count);
  const std::vector<double> m = read_values(mean);
  const std::vector<double> s = read_values(invstd);
  const double bessel = static_cast<double>(count) / static_cast<double>(count - 1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "update_running_stats_cpu", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    const int64_t step = running_mean.stride(0);
    for (size_t c = 0; c < m.size(); ++c) {
      scalar_t& r = rm[static_cast<int64_t>(c) * step];
      r = static_cast<scalar_t>((1.0 - momentum) * static_cast<double>(r) + momentum * m[c]);
    }
  });
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_var.scalar_type(), "update_running_stats_cpu", [&] {
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    const int64_t step = running_var.stride(0);
    for (size_t c = 0; c < s.size(); ++c) {
      // invstd = 1/sqrt(var_biased + eps); F.batch_norm stores the unbiased variance.
      const double var = (1.0 / (s[c] * s[c]) - eps) * bessel;
      scalar_t& r = rv[static_cast<int64_t>(c) * step];
      r = static_cast<scalar_t>((1.0 - momentum) * static_cast<double>(r) + momentum * var);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, CPU, m) {
  m.impl("update_running_stats", &update_running_stats_cpu);
}

}  // namespace cpu
}  // namespace shufflenet_fused
