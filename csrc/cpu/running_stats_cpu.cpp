// CPU kernel of update_running_stats: the update of the composite kernel in
// csrc/running_stats.cpp (which serves every other device) as one loop over
// the channels instead of a handful of small tensor ops, which at batch 1 cost
// more than the training forward's arithmetic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "common/bn_math.h"
#include "common/checks.h"
#include "cpu/host_values.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

void update_running_stats_cpu(at::Tensor& running_mean, at::Tensor& running_var, const at::Tensor& mean,
                              const at::Tensor& invstd, double momentum, double eps, c10::SymInt count_arg) {
  check_running_stats_args(running_mean, running_var, mean, invstd, count_arg);
  const int64_t count = count_arg.expect_int();
  const std::vector<double> m = read_values(mean);
  const std::vector<double> s = read_values(invstd);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_mean.scalar_type(), "update_running_stats_cpu", [&] {
    scalar_t* rm = running_mean.mutable_data_ptr<scalar_t>();
    const int64_t step = running_mean.stride(0);
    for (size_t c = 0; c < m.size(); ++c) {
      scalar_t& r = rm[static_cast<int64_t>(c) * step];
      r = static_cast<scalar_t>(running_average(static_cast<double>(r), m[c], momentum));
    }
  });
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, running_var.scalar_type(), "update_running_stats_cpu", [&] {
    scalar_t* rv = running_var.mutable_data_ptr<scalar_t>();
    const int64_t step = running_var.stride(0);
    for (size_t c = 0; c < s.size(); ++c) {
      const double var = unbiased_var_from_invstd(s[c], eps, static_cast<double>(count));
      scalar_t& r = rv[static_cast<int64_t>(c) * step];
      r = static_cast<scalar_t>(running_average(static_cast<double>(r), var, momentum));
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, CPU, m) {
  m.impl("update_running_stats", &update_running_stats_cpu);
}

}  // namespace cpu
}  // namespace shufflenet_fused
