// What the op entry points (dwconv_bn_cpu.cpp) hand to the per-ISA kernels
// (kernels_*.cpp), and the per-ISA entry points themselves.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "../op_checks.h"

namespace shufflenet_fused {
namespace cpu {

struct EvalParams {
  const at::Tensor& x;       // NCHW-contiguous input (eval), NHWC (eval_channels_last)
  const std::vector<double>& weight;  // (C, 1, K, K), row-major
  const std::vector<double>& scale;  // folded BN, per parameter channel
  const std::vector<double>& shift;
  ConvGeometry g;
  int64_t groups;
  bool shuffle_last;
  at::Tensor& y;  // output, in x's layout
};

struct TrainParams {
  const at::Tensor& x;
  const std::vector<double>& weight;
  const std::vector<double>& gamma;
  const std::vector<double>& beta;
  ConvGeometry g;
  int64_t groups;
  double eps;
  bool shuffle_last;
  at::Tensor& y;
  at::Tensor& mean;    // (C,), stat dtype
  at::Tensor& invstd;  // (C,), stat dtype
};

struct BackwardParams {
  const at::Tensor& grad_out;  // NCHW-contiguous
  const at::Tensor& x;
  const std::vector<double>& weight;
  const std::vector<double>& gamma;
  const std::vector<double>& mean;
  const std::vector<double>& invstd;
  ConvGeometry g;
  int64_t groups;
  bool shuffle_last;
  bool training;
  at::Tensor& grad_x;
  std::vector<double>& grad_w;      // (C*K*K)
  std::vector<double>& grad_gamma;  // (C)
  std::vector<double>& grad_beta;   // (C)
};

// dst = src in the other memory format (NCHW <-> channels_last, float32):
// per batch entry, a C x HW matrix transposed.
struct RelayoutParams {
  const at::Tensor& src;  // NCHW- or NHWC-contiguous, 4-D, float32
  at::Tensor& dst;        // same sizes, the other of the two formats
};

// One set of kernels per instruction set; see kernels_*.cpp and cpu_isa.h.
#define SHUFFLENET_FUSED_DECLARE_ISA(isa)   \
  namespace isa {                           \
  void eval(const EvalParams& p);           \
  void eval_channels_last(const EvalParams& p); \
  void train(const TrainParams& p);         \
  void backward(const BackwardParams& p);   \
  void relayout(const RelayoutParams& p);   \
  }

SHUFFLENET_FUSED_DECLARE_ISA(baseline)
#if defined(__x86_64__) || defined(_M_X64)
SHUFFLENET_FUSED_DECLARE_ISA(avx2)
SHUFFLENET_FUSED_DECLARE_ISA(avx512)
#endif

}  // namespace cpu
}  // namespace shufflenet_fused
