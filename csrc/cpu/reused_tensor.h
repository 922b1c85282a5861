// Per-thread host buffers reused across op calls: glibc returns a freed
// multi-MB block to the OS, and faulting it back in on every call costs more
// than the work done in it.
#pragma once

#include <ATen/ATen.h>

namespace shufflenet_fused {
namespace cpu {

// A contiguous tensor of `sizes` in the storage of `slot`, which grows to the
// largest size (and follows the dtype) asked of it and is kept in between.
inline at::Tensor reused_tensor(at::Tensor& slot, at::IntArrayRef sizes, const at::TensorOptions& options) {
  const int64_t numel = c10::multiply_integers(sizes);
  if (!slot.defined() || slot.numel() < numel || slot.scalar_type() != options.dtype().toScalarType())
    slot = at::empty({numel}, options.memory_format(at::MemoryFormat::Contiguous));
  return slot.narrow(0, 0, numel).view(sizes);
}

}  // namespace cpu
}  // namespace shufflenet_fused
