// The kernel table of the instruction set this translation unit is compiled
// for: the dtype dispatch of each mode's kernel body. Included once, by the
// ISA's translation unit (isa/*.cpp, avx512/kernels.cpp), after its target
// pragma.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include "cpu/backward.h"
#include "cpu/eval.h"
#include "cpu/eval_channels_last.h"
#include "cpu/inference/pipeline.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/relayout.h"
#include "cpu/train.h"
#include "cpu/window_weight_grad.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

inline void eval(const EvalParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_eval_cpu",
                                  [&] { eval_kernel<scalar_t>(p); });
}

inline void eval_channels_last(const EvalParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_eval_channels_last_cpu",
                                  [&] { eval_channels_last_kernel<scalar_t>(p); });
}

inline void train(const TrainParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_train_cpu",
                                  [&] { train_kernel<scalar_t>(p); });
}

inline void backward(const BackwardParams& p) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "dwconv_bn_backward_cpu",
                                  [&] { backward_kernel<scalar_t>(p); });
}

inline void relayout(const RelayoutParams& p) { relayout_kernel(p); }

inline void run_inference(const InferParams& p) { infer::infer_network(p); }

constexpr KernelTable kernel_table{&eval,     &eval_channels_last, &train, &backward, &window_weight_grad,
                                   &relayout, &run_inference};

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
