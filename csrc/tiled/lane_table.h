// The lane table: per lane channel, the K*K conv taps and the BN coefficients
// that the conv passes read, and the prep pass that fills it.
//
// The table is [(K*K + kCoefRows) x C], tap- and row-major and indexed by lane
// (input) channel, so that the channels_last kernels, where lane = channel,
// read it with coalesced loads. Prep fills it from the parameters (indexed by
// parameter channel); the finalize passes (tiled/finalize.h) overwrite rows
// once batch statistics are known.
#pragma once

#include <cstdint>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/host_device.h"
#include "tiled/conv_window.h"

namespace shufflenet_fused {
namespace tiled {

// Rows of the lane table after the K*K weight taps.
enum : int { kRowShift = 0, kRowScale = 1, kRowMean = 2, kRowA = 3, kRowB = 4, kRowD = 5, kCoefRows = 6 };

// One lane's column of the table: y = conv(w) * scale + shift (eval; scale is
// 1 where BN is folded into the taps), and the BN backward
// dz = A * (g + B * (z - mean) + D) (common/bn_math.h).
template <int KK, typename acc_t>
struct LaneCoefs {
  Taps<KK, acc_t> w;
  acc_t shift, scale, mean, A, B, D;
};

template <int KK, typename acc_t>
SF_HD void load_lane_coefs(const acc_t* table, int64_t C, int64_t c, LaneCoefs<KK, acc_t>& lc) {
  lc.w.load(table + c, C);
  lc.shift = table[(KK + kRowShift) * C + c];
  lc.scale = table[(KK + kRowScale) * C + c];
  lc.mean = table[(KK + kRowMean) * C + c];
  lc.A = table[(KK + kRowA) * C + c];
  lc.B = table[(KK + kRowB) * C + c];
  lc.D = table[(KK + kRowD) * C + c];
}

// A weight element as the kernels' accumulation type sees it, in double.
template <typename scalar_t, typename acc_t>
SF_HD double weight_at(const scalar_t* w, int64_t i) {
  return static_cast<double>(static_cast<acc_t>(w[i]));
}

// An optional per-parameter-channel BN value (gamma, beta): `absent` when null.
template <typename acc_t>
SF_HD double optional_param(const acc_t* values, int64_t p, double absent) {
  return values ? static_cast<double>(values[p]) : absent;
}

// Taps rows of lane channel c: the weight of parameter channel p times `scale`.
template <typename scalar_t, typename acc_t>
SF_HD void write_scaled_taps(acc_t* table, int64_t C, int KK, int64_t c, const scalar_t* weight, int64_t p,
                             double scale) {
  for (int t = 0; t < KK; ++t)
    table[t * C + c] = static_cast<acc_t>(weight_at<scalar_t, acc_t>(weight, p * KK + t) * scale);
}

// The eval coefficients of lane channel c: BN folded into the taps (taps =
// w * scale, scale row 1) where that keeps F.batch_norm's NaN/Inf pattern,
// else taps = w and BN applied to the conv output (scale row = scale).
template <typename scalar_t, typename acc_t>
SF_HD void write_eval_coefs(acc_t* table, int64_t C, int KK, int64_t c, const scalar_t* weight, int64_t p,
                            const ScaleShift& f) {
  const bool fold = f.foldable();
  write_scaled_taps<scalar_t, acc_t>(table, C, KK, c, weight, p, fold ? f.scale : 1.0);
  table[(KK + kRowScale) * C + c] = static_cast<acc_t>(fold ? 1.0 : f.scale);
  table[(KK + kRowShift) * C + c] = static_cast<acc_t>(f.shift);
}

enum class Prep : int {
  Eval,      // write_eval_coefs with running statistics
  Raw,       // taps = w (statistics pass of the training forward)
  Backward,  // taps = w, mean row, A = gamma * invstd (B = D = 0: frozen statistics)
};

template <typename scalar_t, typename acc_t>
struct PrepArgs {
  const scalar_t* weight;  // (C, K*K), indexed by parameter channel
  // Per parameter channel; gamma/beta may be null (1 and 0).
  const acc_t* mean;
  const acc_t* var;
  const acc_t* invstd;
  const acc_t* gamma;
  const acc_t* beta;
  double eps;
  int KK;
  int64_t C, groups;
  bool shuffle_last;
  acc_t* table;
};

// The table column of lane channel c.
template <typename scalar_t, typename acc_t>
SF_HD void prep_lane(Prep kind, const PrepArgs<scalar_t, acc_t>& a, int64_t c) {
  const int64_t p = ChannelMap(a.C, a.groups, a.shuffle_last).lane_of_input(c).param;
  const double gamma = optional_param(a.gamma, p, 1.0);
  const double beta = optional_param(a.beta, p, 0.0);
  ScaleShift f{1.0, 0.0};
  double mean = 0.0;
  BnBackwardCoefs k{0.0, 0.0, 0.0};
  if (kind == Prep::Eval) {
    f = fold_running_stats(static_cast<double>(a.mean[p]), static_cast<double>(a.var[p]), gamma, beta, a.eps);
  } else if (kind == Prep::Backward) {
    mean = static_cast<double>(a.mean[p]);
    k = bn_backward_coefs(gamma, static_cast<double>(a.invstd[p]), 0.0, 0.0, 0.0, /*training=*/false);
  }
  write_eval_coefs<scalar_t, acc_t>(a.table, a.C, a.KK, c, a.weight, p, f);
  a.table[(a.KK + kRowMean) * a.C + c] = static_cast<acc_t>(mean);
  a.table[(a.KK + kRowA) * a.C + c] = static_cast<acc_t>(k.A);
  a.table[(a.KK + kRowB) * a.C + c] = static_cast<acc_t>(k.B);
  a.table[(a.KK + kRowD) * a.C + c] = static_cast<acc_t>(k.D);
}

}  // namespace tiled
}  // namespace shufflenet_fused
