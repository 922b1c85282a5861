// The finalize passes of the tiled kernels: per channel, add the partial slots
// that a conv pass wrote and turn the totals into results (batch statistics,
// BN gradients, weight gradient) and lane-table rows for the next pass.
//
// A channel's slots are split into kFinalStrands strands (slot i goes to
// strand i % kFinalStrands), each added in slot order in double; the strands
// are then combined by a fixed tree (the CUDA kernels' shared-memory tree, the
// emulator's loop of the same shape). Same shapes, same order: results are
// bitwise reproducible without atomics.
#pragma once

#include <cstdint>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/host_device.h"
#include "tiled/lane_table.h"

namespace shufflenet_fused {
namespace tiled {

// A finalize block reduces kFinalChannels channels, each over kFinalStrands
// strands of slots.
constexpr int kFinalChannels = 8;
constexpr int kFinalStrands = 128;

// What a finalize pass reduces: partials [values x slots x C] by lane channel,
// and the channel map that sends lane channel c to the parameter channel its
// result belongs to.
template <typename acc_t>
struct Partials {
  const acc_t* part;
  int64_t slots, C, groups;
  bool shuffle_last;

  // The slots of value i, [slots x C].
  SF_HD const acc_t* value(int i) const { return part + i * slots * C; }
};

// Training forward: mean/invstd from the moment partials (n, mean, m2), and
// the lane table's taps and shift row folded with them for the pass that
// writes y.
template <typename scalar_t, typename acc_t>
struct FinalizeStatsArgs {
  Partials<acc_t> in;
  int KK;
  double eps;
  const scalar_t* weight;
  const acc_t* gamma;  // may be null
  const acc_t* beta;   // may be null
  acc_t* mean_out;     // per parameter channel
  acc_t* invstd_out;
  acc_t* table;
};

// Backward: grad_bn_weight/bias from the partials (sum_g, sum_gzc) and, with
// batch statistics, the A, B, D rows of the lane table for the pass that
// writes dz.
template <typename acc_t>
struct FinalizeGradStatsArgs {
  Partials<acc_t> in;
  int KK;
  const acc_t* gamma;   // may be null
  const acc_t* invstd;  // per parameter channel
  double count;         // values per channel
  bool training;
  acc_t* grad_gamma;
  acc_t* grad_beta;
  acc_t* table;
};

// Backward: the weight gradient from the K*K tap partials.
template <typename scalar_t, typename acc_t>
struct FinalizeWeightGradArgs {
  Partials<acc_t> in;
  int KK;
  scalar_t* grad_w;
};

// One strand of a channel's slots: strand, strand + kFinalStrands, ... in order.
template <typename acc_t>
SF_HD double strand_sum(const acc_t* values, int64_t slots, int64_t C, int64_t c, int strand) {
  double s = 0.0;
  for (int64_t i = strand; i < slots; i += kFinalStrands) s += static_cast<double>(values[i * C + c]);
  return s;
}

// Moments, sweep 1: total count and sum of count * mean.
template <typename acc_t>
SF_HD void strand_count_sum(const acc_t* part, int64_t slots, int64_t C, int64_t c, int strand, double* count,
                            double* sum) {
  double n = 0.0, s = 0.0;
  for (int64_t i = strand; i < slots; i += kFinalStrands) {
    const double ni = static_cast<double>(part[i * C + c]);
    n += ni;
    s += ni * static_cast<double>(part[(slots + i) * C + c]);
  }
  *count = n;
  *sum = s;
}

// Moments, sweep 2: sum of m2_i + n_i * (mean_i - mean)^2, the exact pooled
// sum of squared deviations once the channel mean is known.
template <typename acc_t>
SF_HD double strand_m2(const acc_t* part, int64_t slots, int64_t C, int64_t c, int strand, double mean) {
  double s = 0.0;
  for (int64_t i = strand; i < slots; i += kFinalStrands) {
    const double ni = static_cast<double>(part[i * C + c]);
    const double d = static_cast<double>(part[(slots + i) * C + c]) - mean;
    s += static_cast<double>(part[(2 * slots + i) * C + c]) + ni * d * d;
  }
  return s;
}

template <typename scalar_t, typename acc_t>
SF_HD void finish_stats(const FinalizeStatsArgs<scalar_t, acc_t>& a, int64_t c, double count, double mean,
                        double m2) {
  const int64_t C = a.in.C;
  const int64_t p = ChannelMap(C, a.in.groups, a.in.shuffle_last).lane_of_input(c).param;
  const double invstd = invstd_from_moments(count, m2, a.eps);
  a.mean_out[p] = static_cast<acc_t>(mean);
  a.invstd_out[p] = static_cast<acc_t>(invstd);
  const double gamma = optional_param(a.gamma, p, 1.0);
  const double beta = optional_param(a.beta, p, 0.0);
  const ScaleShift f = fold_batch_stats(mean, invstd, gamma, beta);
  write_eval_coefs<scalar_t, acc_t>(a.table, C, a.KK, c, a.weight, p, f);
}

template <typename acc_t>
SF_HD void finish_grad_stats(const FinalizeGradStatsArgs<acc_t>& a, int64_t c, double sum_g, double sum_gzc) {
  const int64_t C = a.in.C;
  const int64_t p = ChannelMap(C, a.in.groups, a.in.shuffle_last).lane_of_input(c).param;
  const double invstd = static_cast<double>(a.invstd[p]);
  const double gamma = optional_param(a.gamma, p, 1.0);
  a.grad_beta[p] = static_cast<acc_t>(sum_g);
  a.grad_gamma[p] = static_cast<acc_t>(bn_grad_gamma(sum_gzc, invstd));
  if (a.training) {
    const BnBackwardCoefs k = bn_backward_coefs(gamma, invstd, sum_g, sum_gzc, a.count, true);
    a.table[(a.KK + kRowA) * C + c] = static_cast<acc_t>(k.A);
    a.table[(a.KK + kRowB) * C + c] = static_cast<acc_t>(k.B);
    a.table[(a.KK + kRowD) * C + c] = static_cast<acc_t>(k.D);
  }
}

template <typename scalar_t, typename acc_t>
SF_HD void finish_weight_grad(const FinalizeWeightGradArgs<scalar_t, acc_t>& a, int64_t c, int t, double total) {
  const int64_t p = ChannelMap(a.in.C, a.in.groups, a.in.shuffle_last).lane_of_input(c).param;
  a.grad_w[p * a.KK + t] = static_cast<scalar_t>(static_cast<acc_t>(total));
}

}  // namespace tiled
}  // namespace shufflenet_fused
