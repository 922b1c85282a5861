// What the op entry points (dwconv_bn_cpu.cpp) hand to the CPU kernels, and
// the table of kernels that each instruction-set translation unit defines
// (isa/baseline.cpp, isa/avx2.cpp, avx512/kernels.cpp).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "common/checks.h"
#include "cpu/cpu_isa.h"
#include "cpu/inference/network_plan.h"

namespace shufflenet_fused {
namespace cpu {

struct EvalParams {
  const at::Tensor& x;                // NCHW-contiguous input (eval), NHWC (eval_channels_last)
  const std::vector<double>& weight;  // (C, 1, K, K), row-major
  const std::vector<double>& scale;   // folded BN, per parameter channel
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

// The weight gradient of one channel over a block of outputs
// (window_weight_grad.h): grad_w[kh*K + kw] += sum over (r, q) of
// dz[r][q] * window[r*stride + kh][q*stride + kw].
struct WindowWeightGradParams {
  const at::Tensor& dz;      // (rows, cols), contiguous, float32 or float64
  const at::Tensor& window;  // ((rows-1)*stride + K, (cols-1)*stride + K), rows contiguous, dz's dtype
  int64_t K, stride;
  double* grad_w;  // (K*K), added to
};

// dst = src in the other memory format (NCHW <-> channels_last, float32):
// per batch entry, a C x HW matrix transposed.
struct RelayoutParams {
  const at::Tensor& src;  // NCHW- or NHWC-contiguous, 4-D, float32
  at::Tensor& dst;        // same sizes, the other of the two formats
};

// The kernels of one instruction set.
struct KernelTable {
  void (*eval)(const EvalParams&);
  void (*eval_channels_last)(const EvalParams&);
  void (*train)(const TrainParams&);
  void (*backward)(const BackwardParams&);
  void (*window_weight_grad)(const WindowWeightGradParams&);
  void (*relayout)(const RelayoutParams&);
  void (*infer)(const InferParams&);  // the inference pipeline (cpu/inference/)
};

extern const KernelTable baseline_kernels;
#if defined(__x86_64__) || defined(_M_X64)
extern const KernelTable avx2_kernels;
extern const KernelTable avx512_kernels;
#endif

// The table of the ISA in effect (active_cpu_isa()).
const KernelTable& active_kernels();

}  // namespace cpu
}  // namespace shufflenet_fused
