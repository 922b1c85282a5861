// The backward of large NCHW planes, tile by tile (plane_tiles.h), so that a
// thread needs no buffer of a whole plane or of a channel's N planes (the
// untiled backward keeps a channel's conv output z and its dz, and stages
// whole planes). Tasks are parameter channels, as in the untiled backward:
// each channel's sums are reduced by one thread in a fixed order, so the
// result does not depend on the thread count. Per channel:
//   1. per output tile, z = the conv of its input window (conv_tile):
//      sum(g) and sum(g * (z - mean)), hence BN's backward as dz =
//      A * (g + B*(z - mean) + D) (common/bn_math.h);
//   2. per output tile again, dz over the tile and the halo of outputs that
//      the tile's input rows and columns feed (z recomputed there in
//      training; frozen statistics need no z):
//      - the weight gradient from its definition over the tile's own outputs
//        (valid outputs only, the input zero-padded at the image's border:
//        the reference's NaN/Inf pattern by construction), in the ISA's
//        vector width (window_weight_grad.h);
//      - grad_input of the input rows and columns the tile owns ([o0*S,
//        o1*S), the last tile to the border): a stride-1 conv of dz with the
//        flipped taps, dz dilated by the stride first, through the ISA's eval
//        kernel on that region as a plane of its own (its zero padding falls
//        beyond what the owned pixels read, or beyond the image).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/conv_geometry.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_tiles.h"
#include "cpu/reused_tensor.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// Products summed in the working type over this many, then in double.
constexpr int64_t kSumBlock = 256;

// Per-thread buffers of one tile's backward, kept between tasks and calls.
enum Slot { kGrad, kDz, kDilated, kWindow, kGradInput, kSlots };

at::Tensor backward_buffer(Slot slot, int64_t rows, int64_t cols, at::ScalarType dtype) {
  thread_local std::array<at::Tensor, kSlots> cache;
  return reused_tensor(cache[slot], {rows, cols}, at::TensorOptions().dtype(dtype));
}

// grad_output rows [r0, r1), columns [c0, c1) of plane (n, channel), in the
// working type, contiguous.
at::Tensor grad_region(const at::Tensor& go, int64_t n, int64_t channel, int64_t r0, int64_t r1, int64_t c0,
                       int64_t c1, at::ScalarType acc) {
  const at::Tensor src = go.select(0, n).select(0, channel).slice(0, r0, r1).slice(1, c0, c1);
  return backward_buffer(kGrad, r1 - r0, c1 - c0, acc).copy_(src);
}

// Adds sum(g) and sum(g * (z - m)) over a tile: g contiguous, z with row stride.
template <typename acc_t>
void add_grad_sums(const at::Tensor& g, const at::Tensor& z, acc_t m, double* sum_g, double* sum_gzc) {
  const int64_t rows = g.size(0), cols = g.size(1), z_pitch = z.stride(0);
  const acc_t* gd = g.data_ptr<acc_t>();
  const acc_t* zd = z.data_ptr<acc_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += kSumBlock) {
      const int64_t c1 = std::min(cols, c0 + kSumBlock);
      const acc_t* gr = gd + r * cols;
      const acc_t* zr = zd + r * z_pitch;
      acc_t sg = 0, sgz = 0;
#pragma omp simd reduction(+ : sg, sgz)
      for (int64_t c = c0; c < c1; ++c) {
        sg += gr[c];
        sgz += gr[c] * (zr[c] - m);
      }
      *sum_g += static_cast<double>(sg);
      *sum_gzc += static_cast<double>(sgz);
    }
}

// dz = A * (g + B*(z - m) + D) in place of g (z, with row stride, only read in training).
template <typename acc_t>
void grad_to_dz(at::Tensor& g, const at::Tensor* z, acc_t m, const BnBackwardCoefs& k, bool training) {
  const int64_t rows = g.size(0), cols = g.size(1);
  const acc_t a = static_cast<acc_t>(k.A), b = static_cast<acc_t>(k.B), d = static_cast<acc_t>(k.D);
  acc_t* gd = g.data_ptr<acc_t>();
  for (int64_t r = 0; r < rows; ++r) {
    acc_t* gr = gd + r * cols;
    const acc_t* zr = training ? z->data_ptr<acc_t>() + r * z->stride(0) : nullptr;
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) gr[c] = bn_backward_dz(a, b, d, gr[c], training ? zr[c] - m : acc_t(0), training);
  }
}

// Input rows [begin, end) read by outputs [o0, o1) along one axis, zero
// padding included (begin may be < 0, end may pass the border).
struct PaddedSpan {
  int64_t begin, end;
};

PaddedSpan padded_input(int64_t o0, int64_t o1, int64_t K, int64_t S) {
  return {window_start(o0, K, S), window_start(o1 - 1, K, S) + K};
}

// The weight gradient over dz's outputs rows [o0, o1), columns [w0, w1) of
// the plane (dz: their values, contiguous), from its definition: the input
// window they read, zero where it leaves the image, times dz, per tap (the
// ISA's window_weight_grad).
void add_weight_grad(const at::Tensor& dz, const at::Tensor& x_plane, const ConvGeometry& g, const Tile& t,
                     double* gw) {
  const int64_t K = g.K, S = g.stride;
  const PaddedSpan rows = padded_input(t.o0, t.o1, K, S), cols = padded_input(t.w0, t.w1, K, S);
  at::Tensor window = backward_buffer(kWindow, rows.end - rows.begin, cols.end - cols.begin, dz.scalar_type()).zero_();
  const int64_t r0 = std::max<int64_t>(0, rows.begin), r1 = std::min(g.H, rows.end);
  const int64_t c0 = std::max<int64_t>(0, cols.begin), c1 = std::min(g.W, cols.end);
  window.slice(0, r0 - rows.begin, r1 - rows.begin)
      .slice(1, c0 - cols.begin, c1 - cols.begin)
      .copy_(x_plane.slice(0, r0, r1).slice(1, c0, c1));
  active_kernels().window_weight_grad(WindowWeightGradParams{dz, window, K, S, gw});
}

// The input pixels a tile owns along one axis: [o0*S, o1*S), the last tile's to the border.
InputSpan owned_input(int64_t o0, int64_t o1, int64_t out, int64_t S, int64_t in) {
  return {o0 * S, o1 == out ? in : o1 * S};
}

// The region along one axis whose dz the gradient of owned inputs [i0, i1)
// needs, on the dilated grid (input coordinates, dz at multiples of S):
// [begin, end), begin a multiple of S.
InputSpan dilated_region(const InputSpan& owned, int64_t K, int64_t S, int64_t in) {
  int64_t begin = std::max<int64_t>(0, owned.begin - K / 2);
  begin -= begin % S;
  return {begin, std::min(in, owned.end + K / 2)};
}

template <typename acc_t>
void backward_channel(const BackwardParams& P, const PlaneTiles& tiles, int64_t c, const ChannelMap& map) {
  const ConvGeometry& g = P.g;
  const int64_t K = g.K, S = g.stride, KK = K * K;
  const at::ScalarType acc = c10::CppTypeToScalarType<acc_t>::value;
  const LaneChannels lane = map.lane_of_param(c);
  const double* taps = P.weight.data() + c * KK;
  const acc_t m = static_cast<acc_t>(P.mean[c]);

  double sum_g = 0, sum_gzc = 0;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t i = 0; i < tiles.count(); ++i) {
      const Tile t = tile_of(tiles, g, i);
      const at::Tensor z = conv_tile(P.x, n, lane.input, g, t, taps, 1.0, 0.0, acc);
      add_grad_sums<acc_t>(grad_region(P.grad_out, n, lane.output, t.o0, t.o1, t.w0, t.w1, acc), z, m, &sum_g,
                           &sum_gzc);
    }
  P.grad_beta[c] = sum_g;
  P.grad_gamma[c] = bn_grad_gamma(sum_gzc, P.invstd[c]);
  const BnBackwardCoefs k =
      bn_backward_coefs(P.gamma[c], P.invstd[c], sum_g, sum_gzc, static_cast<double>(g.N * g.Ho * g.Wo), P.training);

  std::vector<double> flipped(taps, taps + KK);
  std::reverse(flipped.begin(), flipped.end());
  const std::vector<double> ones{1.0}, zeros{0.0};
  double* gw = P.grad_w.data() + c * KK;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t i = 0; i < tiles.count(); ++i) {
      const Tile t = tile_of(tiles, g, i);
      const InputSpan own_rows = owned_input(t.o0, t.o1, g.Ho, S, g.H);
      const InputSpan own_cols = owned_input(t.w0, t.w1, g.Wo, S, g.W);
      const InputSpan dil_rows = dilated_region(own_rows, K, S, g.H);
      const InputSpan dil_cols = dilated_region(own_cols, K, S, g.W);
      // dz over the outputs on the dilated region: it contains the tile.
      const Tile region{dil_rows.begin / S, std::min(g.Ho, (dil_rows.end + S - 1) / S), dil_cols.begin / S,
                        std::min(g.Wo, (dil_cols.end + S - 1) / S)};
      at::Tensor dz = grad_region(P.grad_out, n, lane.output, region.o0, region.o1, region.w0, region.w1, acc);
      if (P.training) {
        const at::Tensor z = conv_tile(P.x, n, lane.input, g, region, taps, 1.0, 0.0, acc);
        grad_to_dz<acc_t>(dz, &z, m, k, true);
      } else {
        grad_to_dz<acc_t>(dz, nullptr, m, k, false);
      }
      const at::Tensor own_dz = backward_buffer(kDz, t.o1 - t.o0, t.w1 - t.w0, acc)
                                    .copy_(dz.slice(0, t.o0 - region.o0, t.o1 - region.o0)
                                               .slice(1, t.w0 - region.w0, t.w1 - region.w0));
      add_weight_grad(own_dz, P.x.select(0, n).select(0, lane.input), g, t, gw);

      ConvGeometry dg = g;  // the dilated region as a plane of its own, stride 1
      dg.N = dg.C = 1;
      dg.H = dg.Ho = dil_rows.end - dil_rows.begin;
      dg.W = dg.Wo = dil_cols.end - dil_cols.begin;
      dg.stride = 1;
      at::Tensor dilated = dz;
      if (S != 1) {
        dilated = backward_buffer(kDilated, dg.H, dg.W, acc).zero_();
        dilated.slice(0, 0, dg.H, S).slice(1, 0, dg.W, S).copy_(dz);
      }
      at::Tensor gx = backward_buffer(kGradInput, dg.H, dg.W, acc).view({1, 1, dg.H, dg.W});
      active_kernels().eval(EvalParams{dilated.view({1, 1, dg.H, dg.W}), flipped, ones, zeros, dg, 1, false, gx});
      P.grad_x.select(0, n)
          .select(0, lane.input)
          .slice(0, own_rows.begin, own_rows.end)
          .slice(1, own_cols.begin, own_cols.end)
          .copy_(gx.select(0, 0)
                     .select(0, 0)
                     .slice(0, own_rows.begin - dil_rows.begin, own_rows.end - dil_rows.begin)
                     .slice(1, own_cols.begin - dil_cols.begin, own_cols.end - dil_cols.begin));
    }
}

}  // namespace

void backward_in_tiles(const BackwardParams& P) {
  const PlaneTiles tiles(P.g);
  const ChannelMap map(P.g.C, P.groups, P.shuffle_last);
  const bool wide = stat_dtype(P.x.scalar_type()) == at::kDouble;
  at::parallel_for(0, P.g.C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      if (wide) {
        backward_channel<double>(P, tiles, c, map);
      } else {
        backward_channel<float>(P, tiles, c, map);
      }
    }
  });
}

}  // namespace cpu
}  // namespace shufflenet_fused
