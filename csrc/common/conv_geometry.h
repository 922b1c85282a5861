// Depthwise conv geometry (padding k/2, no dilation) and the window and
// border math built on it, shared by the CPU and CUDA kernels (SF_HD).
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace shufflenet_fused {

SF_HD int64_t conv_pad(int64_t k) { return k / 2; }

SF_HD int64_t conv_out_size(int64_t in, int64_t k, int64_t stride) {
  return (in + 2 * conv_pad(k) - k) / stride + 1;
}

// First input coordinate of the window of output coordinate `o` (may be < 0).
SF_HD int64_t window_start(int64_t o, int64_t k, int64_t stride) { return o * stride - conv_pad(k); }

// Taps [*t_begin, *t_end) of the window of output `o` that fall inside [0, in).
SF_HD void valid_taps(int64_t o, int64_t in, int64_t k, int64_t stride, int64_t* t_begin, int64_t* t_end) {
  const int64_t s = window_start(o, k, stride);
  const int64_t b = s < 0 ? -s : 0;
  const int64_t e = (in - s) < k ? (in - s) : k;
  *t_begin = b;
  *t_end = e > b ? e : b;
}

SF_HD int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  const int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

SF_HD int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }  // b > 0

// Unclamped range [first, last] of the outputs whose window covers input i
// (the transposed-conv side); tiles placed by it may start before output 0.
SF_HD int64_t first_covering_output(int64_t i, int64_t k, int64_t s) { return ceil_div(i - conv_pad(k), s); }
SF_HD int64_t last_covering_output(int64_t i, int64_t k, int64_t s) { return floor_div(i + conv_pad(k), s); }

// The same range clamped to the outputs that exist, as [*o_begin, *o_end).
SF_HD void covering_outputs(int64_t i, int64_t out, int64_t k, int64_t stride, int64_t* o_begin, int64_t* o_end) {
  const int64_t first = first_covering_output(i, k, stride);
  const int64_t b = first < 0 ? 0 : first;
  int64_t e = last_covering_output(i, k, stride) + 1;
  if (e > out) e = out;
  *o_begin = b;
  *o_end = e > b ? e : b;
}

}  // namespace shufflenet_fused
