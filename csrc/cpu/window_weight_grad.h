// The weight gradient of one depthwise channel over a block of outputs, from
// its definition: gw[kh*K + kw] += sum over outputs (r, q) of
// dz[r][q] * window[r*S + kh][q*S + kw], the window being the input those
// outputs read (zero where it leaves the image). Used by the tiled backward
// (backward_tiles.cpp); compiled once per ISA, so the dot products run in the
// ISA's vector width.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

#include "common/kernel_size_dispatch.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

template <int K, int S, typename acc_t>
void window_weight_grad_kernel(const acc_t* __restrict dz, int64_t rows, int64_t cols, const acc_t* __restrict window,
                               int64_t pitch, double* gw) {
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* dzr = dz + r * cols;
    for (int kh = 0; kh < K; ++kh) {
      const acc_t* xr = window + (r * S + kh) * pitch;
      for (int kw = 0; kw < K; ++kw)
        for (int64_t q0 = 0; q0 < cols; q0 += kDotBlock) {
          const int64_t q1 = std::min(cols, q0 + kDotBlock);
          acc_t s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t q = q0; q < q1; ++q) s += dzr[q] * xr[q * S + kw];
          gw[kh * K + kw] += static_cast<double>(s);
        }
    }
  }
}

inline void window_weight_grad(const WindowWeightGradParams& p) {
  AT_DISPATCH_FLOATING_TYPES(p.dz.scalar_type(), "window_weight_grad", [&] {
    dispatch_kernel_size(p.K, p.stride, [&](auto k_tag, auto s_tag) {
      window_weight_grad_kernel<decltype(k_tag)::value, decltype(s_tag)::value>(
          p.dz.data_ptr<scalar_t>(), p.dz.size(0), p.dz.size(1), p.window.data_ptr<scalar_t>(), p.window.stride(0),
          p.grad_w);
    });
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
