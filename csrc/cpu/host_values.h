// Small CPU tensors (per-channel BN parameters and statistics, the conv
// weight, the weight/BN gradients) to and from std::vector<double>, read and
// written in place: no temporary tensors. A `.to(kDouble)` per parameter
// tensor would cost, at batch 1, about as much as the kernel itself.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/util/Optional.h>

#include <vector>

namespace shufflenet_fused {
namespace cpu {

// All elements of `t`, in its logical (row-major) order, as doubles.
// (Built from the data range: a sized vector would be zero-filled first, which
// cost as much as the conversion.)
inline std::vector<double> read_values(const at::Tensor& t) {
  const at::Tensor c = t.is_contiguous() ? t : t.contiguous();
  std::vector<double> v;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, c.scalar_type(), "shufflenet_fused_read_values", [&] {
    const scalar_t* p = c.const_data_ptr<scalar_t>();
    v.assign(p, p + c.numel());
  });
  return v;
}

// A per-channel tensor's values, or `count` copies of `fill` when it is absent.
inline std::vector<double> read_values_or(const c10::optional<at::Tensor>& t, int64_t count, double fill) {
  if (t.has_value() && t->defined()) return read_values(*t);
  return std::vector<double>(count, fill);
}

// A new contiguous tensor of `shape` and `dtype` holding `v`.
inline at::Tensor values_to_tensor(const std::vector<double>& v, at::IntArrayRef shape, at::ScalarType dtype) {
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  TORCH_INTERNAL_ASSERT(static_cast<size_t>(out.numel()) == v.size());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "shufflenet_fused_values_to_tensor", [&] {
    scalar_t* p = out.mutable_data_ptr<scalar_t>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<scalar_t>(v[i]);
  });
  return out;
}

}  // namespace cpu
}  // namespace shufflenet_fused
