// CPU kernels of the fused channel shuffle + depthwise conv + BatchNorm ops.
//
// Work is split by channel so that the channel map is applied once per plane:
//  - eval walks output planes (n, o) and reads input plane (n, src(o));
//  - training forward and backward walk parameter channels p (all N planes of
//    one channel per task), so BN statistics and the conv-weight gradient are
//    reduced by one thread in a fixed order: deterministic, no atomics.
// channels_last inputs are computed through one NCHW copy and returned in
// channels_last (a native channels_last kernel is future work).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../op_checks.h"
#include "../shuffle_index.h"
#include "plane_kernels.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

// Below this many output elements per task, threads cost more than they save.
constexpr int64_t kMinElementsPerTask = 16384;

int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(1, elements_per_item));
}

// A per-channel tensor (or a constant when absent) as doubles.
std::vector<double> per_channel_values(const c10::optional<at::Tensor>& t, int64_t C, double fill) {
  std::vector<double> v(C, fill);
  if (t.has_value() && t->defined()) {
    at::Tensor d = t->detach().to(at::kDouble).contiguous();
    std::copy(d.data_ptr<double>(), d.data_ptr<double>() + C, v.begin());
  }
  return v;
}

template <typename acc_t>
std::vector<acc_t> weight_values(const at::Tensor& weight) {
  at::Tensor w = weight.detach().contiguous().to(c10::CppTypeToScalarType<acc_t>::value);
  return std::vector<acc_t>(w.data_ptr<acc_t>(), w.data_ptr<acc_t>() + w.numel());
}

at::Tensor vector_to_tensor(const std::vector<double>& v, at::IntArrayRef shape, at::ScalarType dtype) {
  return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).reshape(shape).to(dtype);
}

// ---------------------------------------------------------------- eval ----

template <typename scalar_t>
void eval_kernel(const at::Tensor& x, const at::Tensor& weight, const std::vector<double>& scale,
                 const std::vector<double>& shift, const ConvGeometry& g, int64_t groups,
                 bool shuffle_last, at::Tensor& y) {
  using acc_t = at::opmath_type<scalar_t>;
  const PlaneShape p(g);
  const ChannelMap map(g.C, groups);
  const std::vector<acc_t> w = weight_values<acc_t>(weight);
  const scalar_t* xd = x.data_ptr<scalar_t>();
  scalar_t* yd = y.data_ptr<scalar_t>();
  const int64_t KK = g.K * g.K;

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    at::parallel_for(0, g.N * g.C, grain_for(p.Ho * p.Wo), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> padded(p.Hp * p.Wp);
      std::vector<acc_t> zrow(p.Wo);
      for (int64_t idx = begin; idx < end; ++idx) {
        const int64_t n = idx / g.C;
        const LaneChannels lane = lane_for_output(map, idx % g.C, shuffle_last);
        load_padded(xd + (n * g.C + lane.input) * p.H * p.W, padded.data(), p);
        const acc_t a = static_cast<acc_t>(scale[lane.param]);
        const acc_t b = static_cast<acc_t>(shift[lane.param]);
        const acc_t* wp = w.data() + lane.param * KK;
        scalar_t* out = yd + (n * g.C + lane.output) * p.Ho * p.Wo;
        for (int64_t oh = 0; oh < p.Ho; ++oh) {
          conv_row<K, S>(padded.data() + oh * S * p.Wp, p.Wp, p.Wo, wp, zrow.data());
          scalar_t* orow = out + oh * p.Wo;
#pragma omp simd
          for (int64_t ow = 0; ow < p.Wo; ++ow) orow[ow] = static_cast<scalar_t>(zrow[ow] * a + b);
        }
      }
    });
  });
}

at::Tensor dwconv_bn_eval_cpu(const at::Tensor& input, const at::Tensor& weight,
                              const at::Tensor& running_mean, const at::Tensor& running_var,
                              const c10::optional<at::Tensor>& bn_weight,
                              const c10::optional<at::Tensor>& bn_bias, int64_t groups,
                              int64_t stride, double eps, bool shuffle_last) {
  const ConvGeometry g = check_conv_args(input, weight, groups, stride);
  check_per_channel(running_mean, "running_mean", input);
  check_per_channel(running_var, "running_var", input);
  check_optional_per_channel(bn_weight, "bn_weight", input);
  check_optional_per_channel(bn_bias, "bn_bias", input);

  // Fold BN into y = conv * scale + shift, per parameter channel.
  const std::vector<double> mean = per_channel_values(running_mean, g.C, 0.0);
  const std::vector<double> var = per_channel_values(running_var, g.C, 1.0);
  const std::vector<double> gamma = per_channel_values(bn_weight, g.C, 1.0);
  const std::vector<double> beta = per_channel_values(bn_bias, g.C, 0.0);
  std::vector<double> scale(g.C), shift(g.C);
  for (int64_t c = 0; c < g.C; ++c) {
    scale[c] = gamma[c] / std::sqrt(var[c] + eps);
    shift[c] = beta[c] - mean[c] * scale[c];
  }

  const at::Tensor x = input.contiguous();
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dwconv_bn_eval_cpu", [&] {
    eval_kernel<scalar_t>(x, weight, scale, shift, g, groups, shuffle_last, y);
  });
  return y.contiguous(output_memory_format(input));
}

// ------------------------------------------------------ training forward ----

template <typename scalar_t>
void train_kernel(const at::Tensor& x, const at::Tensor& weight, const std::vector<double>& gamma,
                  const std::vector<double>& beta, const ConvGeometry& g, int64_t groups,
                  double eps, bool shuffle_last, at::Tensor& y, at::Tensor& mean_out,
                  at::Tensor& invstd_out) {
  using acc_t = at::opmath_type<scalar_t>;
  const PlaneShape p(g);
  const ChannelMap map(g.C, groups);
  const std::vector<acc_t> w = weight_values<acc_t>(weight);
  const scalar_t* xd = x.data_ptr<scalar_t>();
  scalar_t* yd = y.data_ptr<scalar_t>();
  acc_t* mean_d = mean_out.data_ptr<acc_t>();
  acc_t* invstd_d = invstd_out.data_ptr<acc_t>();
  const int64_t plane = p.Ho * p.Wo;
  const int64_t count = g.N * plane;
  const int64_t KK = g.K * g.K;

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    at::parallel_for(0, g.C, grain_for(count), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> padded(p.Hp * p.Wp);
      std::vector<acc_t> z(count);  // this channel's conv output, all N planes
      for (int64_t c = begin; c < end; ++c) {
        const LaneChannels lane = lane_for_param(map, c, shuffle_last);
        const acc_t* wp = w.data() + lane.param * KK;
        double sum = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          load_padded(xd + (n * g.C + lane.input) * p.H * p.W, padded.data(), p);
          acc_t* zn = z.data() + n * plane;
          for (int64_t oh = 0; oh < p.Ho; ++oh) {
            conv_row<K, S>(padded.data() + oh * S * p.Wp, p.Wp, p.Wo, wp, zn + oh * p.Wo);
            sum += sum_row(zn + oh * p.Wo, p.Wo);
          }
        }
        const double mean = sum / static_cast<double>(count);
        // Second pass for the variance: sum of squared deviations is exact
        // enough where E[z^2] - E[z]^2 would cancel.
        double sq = 0;
        const acc_t m = static_cast<acc_t>(mean);
        for (int64_t i0 = 0; i0 < count; i0 += p.Wo) {
          const int64_t len = std::min<int64_t>(p.Wo, count - i0);
          const acc_t* zr = z.data() + i0;
          acc_t s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < len; ++i) s += (zr[i] - m) * (zr[i] - m);
          sq += s;
        }
        const double invstd = 1.0 / std::sqrt(sq / static_cast<double>(count) + eps);
        mean_d[c] = static_cast<acc_t>(mean);
        invstd_d[c] = static_cast<acc_t>(invstd);
        const acc_t a = static_cast<acc_t>(gamma[c] * invstd);
        const acc_t b = static_cast<acc_t>(beta[c] - mean * gamma[c] * invstd);
        for (int64_t n = 0; n < g.N; ++n) {
          const acc_t* zn = z.data() + n * plane;
          scalar_t* out = yd + (n * g.C + lane.output) * plane;
#pragma omp simd
          for (int64_t i = 0; i < plane; ++i) out[i] = static_cast<scalar_t>(zn[i] * a + b);
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dwconv_bn_train_cpu(
    const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bn_weight,
    const c10::optional<at::Tensor>& bn_bias, int64_t groups, int64_t stride, double eps,
    bool shuffle_last) {
  const ConvGeometry g = check_conv_args(input, weight, groups, stride);
  check_optional_per_channel(bn_weight, "bn_weight", input);
  check_optional_per_channel(bn_bias, "bn_bias", input);
  check_training_count(g);

  const std::vector<double> gamma = per_channel_values(bn_weight, g.C, 1.0);
  const std::vector<double> beta = per_channel_values(bn_bias, g.C, 0.0);
  const at::Tensor x = input.contiguous();
  at::Tensor y = at::empty({g.N, g.C, g.Ho, g.Wo}, x.options());
  const auto stat_options = x.options().dtype(stat_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({g.C}, stat_options);
  at::Tensor invstd = at::empty({g.C}, stat_options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dwconv_bn_train_cpu", [&] {
    train_kernel<scalar_t>(x, weight, gamma, beta, g, groups, eps, shuffle_last, y, mean, invstd);
  });
  return {y.contiguous(output_memory_format(input)), mean, invstd};
}

// ------------------------------------------------------------- backward ----

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& weight,
                     const std::vector<double>& gamma, const std::vector<double>& mean,
                     const std::vector<double>& invstd, const ConvGeometry& g, int64_t groups,
                     bool shuffle_last, bool training, at::Tensor& grad_x,
                     std::vector<double>& grad_w, std::vector<double>& grad_gamma,
                     std::vector<double>& grad_beta) {
  using acc_t = at::opmath_type<scalar_t>;
  const PlaneShape p(g);
  const ChannelMap map(g.C, groups);
  const std::vector<acc_t> w = weight_values<acc_t>(weight);
  const scalar_t* xd = x.data_ptr<scalar_t>();
  const scalar_t* gd = grad_out.data_ptr<scalar_t>();
  scalar_t* gxd = grad_x.data_ptr<scalar_t>();
  const int64_t plane = p.Ho * p.Wo;
  const int64_t count = g.N * plane;
  const int64_t KK = g.K * g.K;

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    at::parallel_for(0, g.C, grain_for(count), [&](int64_t begin, int64_t end) {
      std::vector<acc_t> padded(p.Hp * p.Wp);
      std::vector<acc_t> z(count);  // recomputed conv output of this channel
      std::vector<acc_t> dz(plane);
      for (int64_t c = begin; c < end; ++c) {
        const LaneChannels lane = lane_for_param(map, c, shuffle_last);
        const acc_t* wp = w.data() + lane.param * KK;
        const acc_t m = static_cast<acc_t>(mean[c]);

        // Pass 1: recompute z; sum(g) and sum(g * (z - mean)).
        double sum_g = 0, sum_gzc = 0;
        for (int64_t n = 0; n < g.N; ++n) {
          load_padded(xd + (n * g.C + lane.input) * p.H * p.W, padded.data(), p);
          acc_t* zn = z.data() + n * plane;
          conv_plane<K, S>(padded.data(), p, wp, zn);
          const scalar_t* gn = gd + (n * g.C + lane.output) * plane;
          for (int64_t i0 = 0; i0 < plane; i0 += p.Wo) {
            acc_t sg = 0, sgz = 0;
#pragma omp simd reduction(+ : sg, sgz)
            for (int64_t i = i0; i < i0 + p.Wo; ++i) {
              const acc_t gv = static_cast<acc_t>(gn[i]);
              sg += gv;
              sgz += gv * (zn[i] - m);
            }
            sum_g += sg;
            sum_gzc += sgz;
          }
        }
        const double dgamma = sum_gzc * invstd[c];
        grad_beta[c] = sum_g;
        grad_gamma[c] = dgamma;

        // dz = A*g + B*(z - mean) + D: the BN backward, written as one affine
        // map per channel. Frozen statistics (eval) leave only A*g.
        const double A = gamma[c] * invstd[c];
        const double B = training ? -A * invstd[c] * dgamma / count : 0.0;
        const double D = training ? -A * sum_g / count : 0.0;
        const acc_t a = static_cast<acc_t>(A), b = static_cast<acc_t>(B), d = static_cast<acc_t>(D);

        // Pass 2: grad_w += corr(dz, x); grad_x = conv_transpose(dz, w).
        double* gw = grad_w.data() + lane.param * KK;
        for (int64_t n = 0; n < g.N; ++n) {
          const scalar_t* gn = gd + (n * g.C + lane.output) * plane;
          const acc_t* zn = z.data() + n * plane;
#pragma omp simd
          for (int64_t i = 0; i < plane; ++i) dz[i] = a * static_cast<acc_t>(gn[i]) + b * (zn[i] - m) + d;
          load_padded(xd + (n * g.C + lane.input) * p.H * p.W, padded.data(), p);
          accumulate_weight_grad<K, S>(dz.data(), padded.data(), p, gw);
          // `padded` is free again: reuse it as the transposed-conv target.
          scatter_input_grad<K, S>(dz.data(), wp, p, padded.data());
          store_interior(padded.data(), p, gxd + (n * g.C + lane.input) * p.H * p.W);
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> dwconv_bn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bn_weight, const at::Tensor& mean, const at::Tensor& invstd,
    int64_t groups, int64_t stride, bool shuffle_last, bool training) {
  const ConvGeometry g = check_conv_args(input, weight, groups, stride);
  check_grad_output(grad_output, g, input);
  check_optional_per_channel(bn_weight, "bn_weight", input);
  check_stats(mean, invstd, input);

  const std::vector<double> gamma = per_channel_values(bn_weight, g.C, 1.0);
  const std::vector<double> mean_v = per_channel_values(mean, g.C, 0.0);
  const std::vector<double> invstd_v = per_channel_values(invstd, g.C, 1.0);
  const at::Tensor x = input.contiguous();
  const at::Tensor go = grad_output.contiguous();
  at::Tensor grad_x = at::empty_like(x);
  std::vector<double> grad_w(g.C * g.K * g.K, 0.0), grad_gamma(g.C), grad_beta(g.C);
  if (g.N * g.Ho * g.Wo > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "dwconv_bn_backward_cpu", [&] {
      backward_kernel<scalar_t>(go, x, weight, gamma, mean_v, invstd_v, g, groups, shuffle_last,
                                training, grad_x, grad_w, grad_gamma, grad_beta);
    });
  } else {
    grad_x.zero_();
    std::fill(grad_gamma.begin(), grad_gamma.end(), 0.0);
    std::fill(grad_beta.begin(), grad_beta.end(), 0.0);
  }
  const at::ScalarType bn_dtype = bn_grad_dtype(bn_weight, input);
  return {grad_x.contiguous(output_memory_format(input)),
          vector_to_tensor(grad_w, {g.C, 1, g.K, g.K}, weight.scalar_type()),
          vector_to_tensor(grad_gamma, {g.C}, bn_dtype), vector_to_tensor(grad_beta, {g.C}, bn_dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, CPU, m) {
  m.impl("dwconv_bn_eval", &dwconv_bn_eval_cpu);
  m.impl("dwconv_bn_train", &dwconv_bn_train_cpu);
  m.impl("dwconv_bn_backward", &dwconv_bn_backward_cpu);
}

}  // namespace cpu
}  // namespace shufflenet_fused
