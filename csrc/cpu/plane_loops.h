// Portable loops over blocks of rows and flat arrays, shared by every kernel
// body (compiled once per ISA; see isa_namespace.h). The hot loops call no
// out-of-line library code: setup.py builds with
// -fno-tree-loop-distribute-patterns so row copies are not turned into memcpy
// calls, which cost more than the copy for 7-float rows.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// Below this many output elements per task, threads cost more than they save.
constexpr int64_t kMinElementsPerTask = 16384;

inline int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, elements_per_item));
}

template <typename T>
inline void fill_zero(T* __restrict p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = T(0);
}

// Scratch buffer, zero-initialised (the zero borders of padded planes are
// never written afterwards).
template <typename T>
struct Scratch {
  std::unique_ptr<T[]> data;
  explicit Scratch(int64_t n) : data(new T[std::max<int64_t>(n, 1)]) { fill_zero(data.get(), n); }
  T* get() const { return data.get(); }
};

// Blocks of kDotBlock elements are reduced in acc_t vector lanes and the
// blocks added in double, so long reductions keep float32 results accurate.
constexpr int64_t kDotBlock = 1024;

// sum_i v[i], blocks in acc_t lanes, blocks added in double.
template <typename acc_t>
inline double sum_flat(const acc_t* __restrict v, int64_t n) {
  double total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kDotBlock) {
    const int64_t i1 = std::min(n, i0 + kDotBlock);
    acc_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; ++i) s += v[i];
    total += static_cast<double>(s);
  }
  return total;
}

// sum_i (v[i] - m)^2, blocked as sum_flat.
template <typename acc_t>
inline double sum_squared_deviations(const acc_t* __restrict v, int64_t n, acc_t m) {
  double total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kDotBlock) {
    const int64_t i1 = std::min(n, i0 + kDotBlock);
    acc_t s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = i0; i < i1; ++i) s += (v[i] - m) * (v[i] - m);
    total += static_cast<double>(s);
  }
  return total;
}

// dst[r, c] = a * src[r, c] + b for a rows x cols block (pitches in elements).
template <typename scalar_t, typename acc_t>
inline void affine_rows(const acc_t* __restrict src, int64_t src_pitch, int64_t rows, int64_t cols,
                        scalar_t* __restrict dst, int64_t dst_pitch, acc_t a, acc_t b) {
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* s = src + r * src_pitch;
    scalar_t* d = dst + r * dst_pitch;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = static_cast<scalar_t>(s[c] * a + b);
  }
}

// Copies a rows x cols block (source pitch src_pitch) to dst with pitch
// dst_pitch, converting between the element types (either direction).
template <typename src_t, typename dst_t>
inline void copy_rows(const src_t* __restrict src, int64_t src_pitch, int64_t rows, int64_t cols,
                      dst_t* __restrict dst, int64_t dst_pitch) {
  for (int64_t r = 0; r < rows; ++r) {
    const src_t* s = src + r * src_pitch;
    dst_t* d = dst + r * dst_pitch;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) d[c] = static_cast<dst_t>(s[c]);
  }
}

// b[j * rows + i] = a[i * cols + j] for the tile i0 <= i < i0 + ri,
// j0 <= j < j0 + cj of a rows x cols matrix.
inline void transpose_rows(const float* a, int64_t rows, int64_t cols, int64_t i0, int64_t j0, int64_t ri,
                           int64_t cj, float* b) {
  for (int64_t j = 0; j < cj; ++j)
    for (int64_t i = 0; i < ri; ++i) b[(j0 + j) * rows + i0 + i] = a[(i0 + i) * cols + j0 + j];
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
