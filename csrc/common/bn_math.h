// BatchNorm formulas, written once for every kernel (SF_HD, in double):
// statistics from moments, the folds of eval and training BN into one
// per-channel scale and shift, and the backward as one affine map per channel.
#pragma once

#include <cmath>

#include "common/host_device.h"

namespace shufflenet_fused {

// (count, mean, sum of squared deviations) of a set of values.
template <typename T>
struct Moments {
  T n, mean, m2;
};

// Chan et al.'s pairwise update: the moments of the union of two sets.
template <typename T>
SF_HD Moments<T> merge(const Moments<T>& a, const Moments<T>& b) {
  const T n = a.n + b.n;
  if (n == T(0)) return Moments<T>{T(0), T(0), T(0)};
  const T delta = b.mean - a.mean;
  const T fb = b.n / n;
  return Moments<T>{n, a.mean + delta * fb, a.m2 + b.m2 + delta * delta * a.n * fb};
}

// Running sums of one channel, shifted by its first value so that the sum of
// squares does not cancel (values of one channel sit near each other): no
// division per element, exact moments at the end.
template <typename T>
struct ShiftedSums {
  T shift = T(0), s1 = T(0), s2 = T(0), n = T(0);

  SF_HD void add(T z) {
    if (n == T(0)) shift = z;
    const T d = z - shift;
    s1 += d;
    s2 += d * d;
    n += T(1);
  }

  SF_HD Moments<T> moments() const {
    if (n == T(0)) return Moments<T>{T(0), T(0), T(0)};
    const T m = s1 / n;
    const T m2 = s2 - s1 * m;
    return Moments<T>{n, shift + m, m2 > T(0) ? m2 : T(0)};
  }
};

// BN(z) = z * scale + shift.
struct ScaleShift {
  double scale, shift;

  // Whether conv(x, w * scale) + shift has the NaN/Inf pattern of
  // conv(x, w) * scale + shift, as F.batch_norm computes it: only when both
  // are finite (a zero tap times an infinite scale is NaN; an infinite scale
  // times a zero conv output is NaN too, but not in the same places).
  // (v - v == 0 exactly when v is finite; no <cmath> call, so device code
  // uses the same test.)
  SF_HD bool foldable() const { return scale - scale == 0.0 && shift - shift == 0.0; }
};

// Eval: running statistics.
SF_HD ScaleShift fold_running_stats(double mean, double var, double gamma, double beta, double eps) {
  const double scale = gamma / ::sqrt(var + eps);
  return ScaleShift{scale, beta - mean * scale};
}

// Training: BN(z) = (z - mean) * invstd * gamma + beta.
SF_HD ScaleShift fold_batch_stats(double mean, double invstd, double gamma, double beta) {
  const double scale = gamma * invstd;
  return ScaleShift{scale, beta - mean * scale};
}

// 1 / sqrt(biased variance + eps), as F.batch_norm normalises.
SF_HD double invstd_from_moments(double count, double m2, double eps) { return 1.0 / ::sqrt(m2 / count + eps); }

// The unbiased variance that F.batch_norm stores in running_var, from the
// invstd of a training forward over `count` values. Templates so that the
// composite (any device) kernel of update_running_stats applies the same
// formulas to tensors that the CPU kernel applies to doubles.
template <typename T>
SF_HD T unbiased_var_from_invstd(const T& invstd, double eps, double count) {
  return (1.0 / (invstd * invstd) - eps) * (count / (count - 1.0));
}

// (1 - momentum) * old + momentum * new.
template <typename T>
SF_HD T running_average(const T& old_value, const T& new_value, double momentum) {
  return (1.0 - momentum) * old_value + momentum * new_value;
}

// The BN backward per channel as dz = A * (g + B*(z - mean) + D), from
// sum_g = sum(g) and sum_gzc = sum(g * (z - mean)) over the channel;
// grad_gamma = sum_gzc * invstd, grad_beta = sum_g. A = gamma * invstd is
// applied last, as F.batch_norm's backward does: with an infinite gamma (or
// invstd) dz is then +-Inf where the bracket is nonzero, where A*g + ... would
// give Inf - Inf = NaN. Frozen statistics (eval BN) leave only A.
struct BnBackwardCoefs {
  double A, B, D;
};

SF_HD double bn_grad_gamma(double sum_gzc, double invstd) { return sum_gzc * invstd; }

SF_HD BnBackwardCoefs bn_backward_coefs(double gamma, double invstd, double sum_g, double sum_gzc, double count,
                                        bool training) {
  const double A = gamma * invstd;
  if (!training) return BnBackwardCoefs{A, 0.0, 0.0};
  return BnBackwardCoefs{A, -invstd * invstd * sum_gzc / count, -sum_g / count};
}

// dz of one element, given g and zc = z - mean. With frozen statistics
// (training false: B = D = 0) the bracket is left out rather than added with
// zeros, so that a NaN or Inf in z, i.e. in the input, does not reach dz:
// with eval BN the input's gradient does not depend on the input.
template <typename T>
SF_HD T bn_backward_dz(T A, T B, T D, T g, T zc, bool training) {
  return training ? A * (g + B * zc + D) : A * g;
}

}  // namespace shufflenet_fused
