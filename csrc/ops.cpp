// Operator schemas of torch.ops.shufflenet_fused.
//
// The backends (cpu/, cuda/) register kernels with TORCH_LIBRARY_IMPL, the
// autograd formulas live in autograd.cpp, and the fake (meta) kernels are
// in meta/meta_kernels.cpp (the whole-network op's fake kernel is registered
// from Python, shufflenet_fused/ops/_library.py). The Python module that
// loads them all is python/module.cpp.
#include <torch/library.h>

TORCH_LIBRARY(shufflenet_fused, m) {
  // Inference: BN uses running statistics, folded into a per-channel
  // scale/shift; one read of `input`, one write of the result.
  // flexible_layout: it has native NCHW and channels_last kernels (CPU and
  // CUDA), so torch.compile may hand it either layout instead of converting
  // its convolutions' channels_last activations back to NCHW around it.
  m.def(
      "dwconv_bn_eval(Tensor input, Tensor weight, Tensor running_mean, "
      "Tensor running_var, Tensor? bn_weight, Tensor? bn_bias, int groups, "
      "int stride, float eps, bool shuffle_last) -> Tensor",
      {at::Tag::flexible_layout});
  // Training forward: BN uses batch statistics. Returns (output, mean,
  // invstd); mean/invstd are per parameter channel, float32 (float64 for
  // float64 input), and are what the backward needs. The running-stat update
  // is done by the caller (shufflenet_fused.functional) from mean/invstd with
  // update_running_stats (running_stats.cpp).
  m.def(
      "dwconv_bn_train(Tensor input, Tensor weight, Tensor? bn_weight, "
      "Tensor? bn_bias, int groups, int stride, float eps, bool shuffle_last) "
      "-> (Tensor, Tensor, Tensor)");
  // Backward of both forwards. `training` selects batch statistics (the
  // gradient flows through mean and invstd) or frozen statistics (eval BN).
  // The depthwise conv output is recomputed here rather than saved.
  // Returns (grad_input, grad_weight, grad_bn_weight, grad_bn_bias).
  m.def(
      "dwconv_bn_backward(Tensor grad_output, Tensor input, Tensor weight, "
      "Tensor? bn_weight, Tensor mean, Tensor invstd, int groups, int stride, "
      "bool shuffle_last, bool training) -> (Tensor, Tensor, Tensor, Tensor)");
  // Inference of a whole ShuffleNetV1 (or a chain of its blocks), float32,
  // from the modules' own tensors (shufflenet_fused/inference/arguments.py
  // builds the arguments; cpu/inference/inference_cpu.cpp documents them).
  m.def("shufflenet_v1_infer(Tensor input, Tensor?[] params, float[] eps, int[] plan) -> Tensor");
}
