// Per-element and per-window math of the tiled kernels, written once for host
// and device.
//
// Every function here is SF_HD on raw pointers, with no CUDA intrinsics and no
// ATen: the CUDA kernels (csrc/cuda/kernels.cuh) call them per lane, and the
// CPU emulator (csrc/tiled/emulator_test_ops.cpp) calls the very same
// functions in plain loops, so the CPU test suite checks the GPU's index,
// border and window math.
//
// A chunk is kChunk consecutive outputs along W computed together, so that one
// lane reuses the overlapping input window.
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/host_device.h"


namespace shufflenet_fused {
namespace tiled {

// Outputs along W that one lane computes from one window of registers.
constexpr int kChunk = 4;

// Input columns under one chunk of kChunk outputs.
SF_HD constexpr int chunk_segment(int K, int S) { return (kChunk - 1) * S + K; }
// ... rounded up to a multiple of 4 so a staged row segment is read with
// 16-byte shared-memory loads.
SF_HD constexpr int padded_chunk_segment(int K, int S) { return (chunk_segment(K, S) + 3) / 4 * 4; }

// ---------------------------------------------------------- row loaders ----

// Copies N contiguous values; 16-byte vector loads on the device (p must then
// be 16-byte aligned, which the tile layout guarantees).
template <int N, typename T>
SF_HD void load_contiguous(const T* p, T (&out)[N]) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same<T, float>::value && N % 4 == 0) {
    SF_UNROLL
    for (int i = 0; i < N / 4; ++i) {
      const float4 v = reinterpret_cast<const float4*>(p)[i];
      out[4 * i] = v.x;
      out[4 * i + 1] = v.y;
      out[4 * i + 2] = v.z;
      out[4 * i + 3] = v.w;
    }
  } else if constexpr (std::is_same<T, double>::value && N % 2 == 0) {
    SF_UNROLL
    for (int i = 0; i < N / 2; ++i) {
      const double2 v = reinterpret_cast<const double2*>(p)[i];
      out[2 * i] = v.x;
      out[2 * i + 1] = v.y;
    }
  } else
#endif
  {
    SF_UNROLL
    for (int i = 0; i < N; ++i) out[i] = p[i];
  }
}

// The K window rows of one chunk, read from a zero-padded tile (NCHW kernels:
// the tile is in shared memory and already holds the halo and the zeros).
template <typename acc_t>
struct TileRows {
  const acc_t* origin;  // tile element under tap (0, 0) of the chunk's first output
  int pitch;            // tile row length, a multiple of 4

  template <int N>
  SF_HD bool load(int kh, acc_t (&seg)[N]) const {
    load_contiguous<N>(origin + kh * pitch, seg);
    return true;
  }
};

// The same rows, re-read for the weight gradient of a chunk whose conv was
// just computed from them. For K >= 5 the compiler would otherwise keep all
// K rows of the conv alive in registers until the weight-gradient step
// (spilling for float64 K=7); a volatile re-read from shared memory is cheap.
template <typename acc_t>
struct TileRowsReloaded {
  const acc_t* origin;
  int pitch;

  template <int N>
  SF_HD bool load(int kh, acc_t (&seg)[N]) const {
    const volatile acc_t* p = origin + kh * pitch;
    SF_UNROLL
    for (int i = 0; i < N; ++i) seg[i] = p[i];
    return true;
  }
};

// The K window rows of one chunk, read from global memory with border checks
// (channels_last kernels: one lane per channel, rows strided by W*C).
template <int K, int S, typename scalar_t, typename acc_t>
struct GlobalRows {
  const scalar_t* base;  // element (n, c, 0, 0)
  int64_t row_stride, col_stride;
  int64_t H, W;
  int64_t ih0, iw0;  // input coordinate under tap (0, 0); may be negative

  template <int N>
  SF_HD bool load(int kh, acc_t (&seg)[N]) const {
    const int64_t ih = ih0 + kh;
    if (ih < 0 || ih >= H) return false;  // the whole row is padding
    // Columns e in [e_lo, e_hi) of the segment are inside the image.
    const int e_lo = iw0 < 0 ? static_cast<int>(-iw0 < N ? -iw0 : N) : 0;
    const int64_t right = W - iw0;
    constexpr int cols = chunk_segment(K, S);
    const int e_hi = right < cols ? static_cast<int>(right < 0 ? 0 : right) : cols;
    const scalar_t* p = base + ih * row_stride + iw0 * col_stride;
    SF_UNROLL
    for (int e = 0; e < N; ++e)
      seg[e] = (e >= e_lo && e < e_hi) ? static_cast<acc_t>(p[e * col_stride]) : acc_t(0);
    return true;
  }
};

// ------------------------------------------------------------- weights ----

// The K*K taps of one lane's weight, read from a column of the lane table
// (tap t at col[t * stride]). Kept in registers, except for float64 with
// K >= 5, where two K*K arrays of doubles (weights and the weight-gradient
// accumulators of the backward) no longer fit in 255 registers: those read
// the taps from the (L1-resident) table instead. float64 is the gradient-
// checking dtype; the fast paths are float32/half/bfloat16.
template <int KK, typename acc_t>
constexpr bool taps_in_registers() {
  return sizeof(acc_t) <= 4 || KK <= 9;
}

template <int KK, typename acc_t, bool InRegisters = taps_in_registers<KK, acc_t>()>
struct Taps {
  acc_t w[KK];
  SF_HD void load(const acc_t* col, int64_t stride) {
    SF_UNROLL
    for (int t = 0; t < KK; ++t) w[t] = col[t * stride];
  }
  SF_HD acc_t operator[](int t) const { return w[t]; }
};

template <int KK, typename acc_t>
struct Taps<KK, acc_t, false> {
  const acc_t* col;
  int64_t stride;
  SF_HD void load(const acc_t* c, int64_t s) {
    col = c;
    stride = s;
  }
  SF_HD acc_t operator[](int t) const { return col[t * stride]; }
};

// --------------------------------------------------------- conv windows ----

// z[v] = sum_{kh,kw} w[kh,kw] * x[oh*S - pad + kh, (ow0 + v)*S - pad + kw] for the
// kChunk outputs of one chunk; rows that are entirely padding are skipped.
template <int K, int S, typename acc_t, typename Rows, typename W>
SF_HD void conv_chunk(const Rows& rows, const W& w, acc_t (&z)[kChunk]) {
  SF_UNROLL
  for (int v = 0; v < kChunk; ++v) z[v] = acc_t(0);
  SF_UNROLL
  for (int kh = 0; kh < K; ++kh) {
    acc_t seg[padded_chunk_segment(K, S)];
    if (!rows.load(kh, seg)) continue;
    SF_UNROLL
    for (int kw = 0; kw < K; ++kw) {
      SF_UNROLL
      for (int v = 0; v < kChunk; ++v) z[v] += w[kh * K + kw] * seg[v * S + kw];
    }
  }
}

// gw[kh,kw] += sum_v dz[v] * x[window tap (kh, kw) of output v]: the weight
// gradient of one chunk (dz[v] is 0 for outputs past the edge).
template <int K, int S, typename acc_t, typename Rows>
SF_HD void accumulate_weight_grad_chunk(const Rows& rows, const acc_t (&dz)[kChunk], acc_t (&gw)[K * K]) {
  SF_UNROLL
  for (int kh = 0; kh < K; ++kh) {
    acc_t seg[padded_chunk_segment(K, S)];
    if (!rows.load(kh, seg)) continue;
    SF_UNROLL
    for (int kw = 0; kw < K; ++kw) {
      acc_t s = gw[kh * K + kw];
      SF_UNROLL
      for (int v = 0; v < kChunk; ++v) s += dz[v] * seg[v * S + kw];
      gw[kh * K + kw] = s;
    }
  }
}

// One element of grad_input: the transposed conv, gathered over every output
// whose window covers input (ih, iw). dz(oh, ow) is read at
// dz[(oh - oh0) * row_stride + (ow - ow0) * col_stride]. All K*K taps are
// unrolled (so register taps keep constant indices) and predicated: tap kh serves output
// oh = (ih + pad - kh) / S when that division is exact and 0 <= oh < Ho,
// i.e. exactly the outputs covering_outputs() lists.
template <int K, int S, typename acc_t, typename W>
SF_HD acc_t grad_input_gather(const acc_t* dz, int64_t row_stride, int64_t col_stride, int64_t oh0,
                              int64_t ow0, int64_t ih, int64_t iw, int64_t Ho, int64_t Wo, const W& w) {
  constexpr int pad = K / 2;
  acc_t s = acc_t(0);
  SF_UNROLL
  for (int kh = 0; kh < K; ++kh) {
    const int64_t nh = ih + pad - kh;
    if (nh < 0 || nh % S != 0 || nh / S >= Ho) continue;
    const acc_t* row = dz + (nh / S - oh0) * row_stride;
    SF_UNROLL
    for (int kw = 0; kw < K; ++kw) {
      const int64_t nw = iw + pad - kw;
      if (nw < 0 || nw % S != 0 || nw / S >= Wo) continue;
      s += w[kh * K + kw] * row[(nw / S - ow0) * col_stride];
    }
  }
  return s;
}

}  // namespace tiled
}  // namespace shufflenet_fused
