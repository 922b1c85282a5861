// Run-time (K, stride) -> compile-time template parameters, for the CPU and
// CUDA kernels alike.
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <type_traits>

namespace shufflenet_fused {

// Calls f(std::integral_constant<int, K>, std::integral_constant<int, S>).
template <typename F>
void dispatch_kernel_size(int64_t K, int64_t S, F&& f) {
  using std::integral_constant;
  const bool s1 = S == 1;
  switch (K) {
    case 3:
      return s1 ? f(integral_constant<int, 3>{}, integral_constant<int, 1>{})
                : f(integral_constant<int, 3>{}, integral_constant<int, 2>{});
    case 5:
      return s1 ? f(integral_constant<int, 5>{}, integral_constant<int, 1>{})
                : f(integral_constant<int, 5>{}, integral_constant<int, 2>{});
    case 7:
      return s1 ? f(integral_constant<int, 7>{}, integral_constant<int, 1>{})
                : f(integral_constant<int, 7>{}, integral_constant<int, 2>{});
    default:
      TORCH_CHECK(false, "shufflenet_fused: unsupported kernel size ", K);
  }
}

}  // namespace shufflenet_fused
