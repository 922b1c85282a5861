// Argument checks of update_running_stats, shared by its composite (any
// device) and CPU kernels.
#pragma once

#include <ATen/ATen.h>

namespace shufflenet_fused {

inline void check_running_stats_args(const at::Tensor& running_mean, const at::Tensor& running_var,
                                     const at::Tensor& mean, const at::Tensor& invstd, int64_t count) {
  TORCH_CHECK(count > 1, "shufflenet_fused: running statistics need more than 1 value per channel, got ", count);
  TORCH_CHECK(running_mean.dim() == 1 && running_mean.sizes() == mean.sizes() &&
                  running_var.sizes() == invstd.sizes() && mean.sizes() == invstd.sizes(),
              "shufflenet_fused: running statistics and batch statistics differ in shape: running_mean ",
              running_mean.sizes(), ", running_var ", running_var.sizes(), ", mean ", mean.sizes(), ", invstd ",
              invstd.sizes());
  TORCH_CHECK(running_mean.device() == mean.device() && running_var.device() == mean.device() &&
                  invstd.device() == mean.device(),
              "shufflenet_fused: running statistics and batch statistics are on different devices");
}

}  // namespace shufflenet_fused
