// float32 NCHW <-> channels_last copies (the training ops compute
// channels_last inputs through NCHW): per batch entry a C x HW matrix
// transposed in 16 x 16 tiles (hooks::transpose_tile).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu/isa_hooks.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

inline void relayout_kernel(const RelayoutParams& p) {
  const int64_t N = p.src.size(0), C = p.src.size(1), HW = p.src.size(2) * p.src.size(3);
  // NCHW -> NHWC transposes each batch entry's C x HW matrix; NHWC -> NCHW its HW x C one.
  const bool to_channels_last = p.src.is_contiguous();
  const int64_t rows = to_channels_last ? C : HW, cols = to_channels_last ? HW : C;
  const float* a = p.src.data_ptr<float>();
  float* b = p.dst.data_ptr<float>();
  // Tasks: (batch entry, band of 16 pixels), all channels: the NHWC side (a
  // pixel's C values, rarely a multiple of 16 floats) is then read or
  // written whole by one task, never a cache line split between tasks.
  const int64_t bands = (HW + 15) / 16;
  at::parallel_for(0, N * bands, grain_for(16 * C), [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands, pixel0 = (task % bands) * 16, pixels = std::min<int64_t>(16, HW - pixel0);
      const float* an = a + n * rows * cols;
      float* bn = b + n * rows * cols;
      for (int64_t c0 = 0; c0 < C; c0 += 16) {
        const int64_t channels = std::min<int64_t>(16, C - c0);
        // The tile's first row and column of the source matrix, and its extent.
        const int64_t i0 = to_channels_last ? c0 : pixel0, j0 = to_channels_last ? pixel0 : c0;
        const int64_t ri = to_channels_last ? channels : pixels, cj = to_channels_last ? pixels : channels;
        if (ri == 16 && cj == 16) {  // no masks, no per-row tests
          hooks::transpose_tile<true>(an, rows, cols, i0, j0, ri, cj, bn);
        } else {
          hooks::transpose_tile<false>(an, rows, cols, i0, j0, ri, cj, bn);
        }
      }
    }
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
