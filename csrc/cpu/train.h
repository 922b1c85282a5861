// Training forward: BN with batch statistics. Tasks are parameter channels
// (all N planes of one channel per task), so each channel's statistics are
// reduced by one thread in a fixed order: deterministic, no atomics. The conv
// of a lane goes through the ISA's lane path when it has one
// (hooks::try_conv_lane), else through the flat stack.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/checks.h"
#include "common/kernel_size_dispatch.h"
#include "cpu/flat_stack.h"
#include "cpu/isa_hooks.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

// The conv of all N planes of one lane into zc, plane n at zc + n * z_pitch.
// Returns whether the ISA's lane path computed it; otherwise the flat conv
// did, and left the lane's last block of planes staged in xp.
template <int K, int S, typename scalar_t, typename acc_t>
bool conv_lane(const hooks::LanePlan* plan, const scalar_t* xd, const ConvGeometry& g, const FlatStack& f,
               const LaneChannels& lane, const acc_t* w, acc_t* xp, acc_t* zflat, acc_t* zc, int64_t z_pitch) {
  if (hooks::try_conv_lane<K, S>(plan, xd, g, lane.input, w, zc, z_pitch)) return true;
  TORCH_INTERNAL_ASSERT(!(hooks::lanes_in_place<K, S, scalar_t, acc_t>()), "in-place lane path declined");
  conv_lane_flat<K, S>(xd, g, f, lane, w, xp, zflat, zc, z_pitch);
  return false;
}

// sum over planes n < N of sum(z + n * pitch, plane), `sum` being sum_flat
// or the squared deviations: the statistics of a lane whose planes need not
// be contiguous (z written straight into the output). Compact planes are one
// long loop.
template <typename acc_t, typename Sum>
double sum_over_planes(const acc_t* z, int64_t pitch, int64_t N, int64_t plane, const Sum& sum) {
  if (pitch == plane) return sum(z, N * plane);
  double s = 0;
  for (int64_t n = 0; n < N; ++n) s += sum(z + n * pitch, plane);
  return s;
}

// Where the training forward keeps a lane's conv output (see train_kernel).
constexpr int64_t kMinPlaneInOutput = 128;
constexpr int64_t kMaxCompactZBytes = int64_t(1) << 20;

template <typename scalar_t>
void train_kernel(const TrainParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  const FlatStack f(g);
  const auto plan_ref = hooks::lane_plan(g);
  const hooks::LanePlan* plan = plan_ref.get();
  const ChannelMap map(g.C, P.groups, P.shuffle_last);
  const std::vector<acc_t> w(P.weight.begin(), P.weight.end());
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  acc_t* mean_d = P.mean.data_ptr<acc_t>();
  acc_t* invstd_d = P.invstd.data_ptr<acc_t>();
  const int64_t plane = g.Ho * g.Wo;
  const int64_t count = g.N * plane;
  const int64_t KK = g.K * g.K;

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    // float32/float64: the conv output can be written straight into the
    // output channel and normalised there, so a thread needs no buffer of the
    // channel's N planes; half types keep z in float32 until the BN. A compact
    // z is kept while it is at most 1 MB where it measured faster: small
    // planes (7x7: per-plane loops over 49 elements cost more than the buffer)
    // and float64 (the flat stack's copy out, 14x14: 1.09x slower).
    const bool small_z = count * int64_t(sizeof(acc_t)) <= kMaxCompactZBytes;
    const bool z_in_y = std::is_same<scalar_t, acc_t>::value &&
                        !(small_z && (plane < kMinPlaneInOutput || sizeof(acc_t) == 8));
    const int64_t pitch = z_in_y ? g.C * plane : plane;
    at::parallel_for(0, g.C, grain_for(count), [&](int64_t begin, int64_t end) {
      constexpr bool in_place = hooks::lanes_in_place<K, S, scalar_t, acc_t>();  // stages nothing
      Scratch<acc_t> xp(in_place ? 0 : f.buffer_size()), zflat(in_place ? 0 : f.flat_size(f.planes)),
          zbuf(z_in_y ? 0 : count);
      for (int64_t c = begin; c < end; ++c) {
        const LaneChannels lane = map.lane_of_param(c);
        acc_t* z = z_in_y ? reinterpret_cast<acc_t*>(yd) + lane.output * plane : zbuf.get();
        conv_lane<K, S>(plan, xd, g, f, lane, w.data() + c * KK, xp.get(), zflat.get(), z, pitch);
        const double mean = sum_over_planes(z, pitch, g.N, plane, [](const acc_t* v, int64_t n) {
                              return sum_flat(v, n);
                            }) / count;
        // Second pass for the variance: the sum of squared deviations does
        // not cancel the way E[z^2] - E[z]^2 does.
        const double m2 = sum_over_planes(z, pitch, g.N, plane, [m = static_cast<acc_t>(mean)](const acc_t* v, int64_t n) {
          return sum_squared_deviations(v, n, m);
        });
        const double invstd = invstd_from_moments(static_cast<double>(count), m2, P.eps);
        mean_d[c] = static_cast<acc_t>(mean);
        invstd_d[c] = static_cast<acc_t>(invstd);
        const ScaleShift bn = fold_batch_stats(mean, invstd, P.gamma[c], P.beta[c]);
        const acc_t a = static_cast<acc_t>(bn.scale), b = static_cast<acc_t>(bn.shift);
        for (int64_t n = 0; n < g.N; ++n) {
          acc_t* zn = z + n * pitch;
          if (z_in_y) {  // in place: zn is output plane n
#pragma omp simd
            for (int64_t i = 0; i < plane; ++i) zn[i] = zn[i] * a + b;
          } else {
            hooks::affine_block(zn, plane, 1, plane, yd + (n * g.C + lane.output) * plane, plane, a, b);
          }
        }
      }
    });
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
