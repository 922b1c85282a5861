// Per-thread float buffers of the inference pipeline, grown to the largest
// size asked for and kept until the thread exits: activations are written
// into memory that is already mapped, so a call does not page-fault fresh
// multi-MB tensors (what eager PyTorch does on every layer). Never shrunk;
// their size is bounded by the largest image the thread has run (docs/inference.md).
#pragma once

#include <cstdint>
#include <memory>

#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

class GrowingBuffer {
 public:
  float* get(int64_t elems) {
    if (elems > capacity_) {
      data_.reset();  // release before allocating: peak = the new size
      data_.reset(new float[elems]);
      capacity_ = elems;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<float[]> data_;
  int64_t capacity_ = 0;
};

// Scratch private to the running thread within one stage (the stem's rows).
inline float* thread_scratch(int64_t elems) {
  thread_local GrowingBuffer buffer;
  return buffer.get(elems);
}

// Scratch private to the running thread, 64-byte aligned (the packed tiles of
// the pointwise kernel); a different buffer from thread_scratch.
inline float* aligned_thread_scratch(int64_t elems) {
  thread_local GrowingBuffer buffer;
  float* p = buffer.get(elems + 16);
  return p + (16 - (reinterpret_cast<uintptr_t>(p) / sizeof(float)) % 16) % 16;
}

// The band buffers of a block run by rows (pw1's and dw's rows), private to
// the running thread.
inline float* thread_band_buffer(int64_t elems) {
  thread_local GrowingBuffer buffer;
  return buffer.get(elems);
}

// The activation buffers of the image the running thread drives (the whole
// network at N >= threads; at batch 1 the caller's, shared by the team for
// the duration of the call). A different object from thread_scratch, so a
// thread can drive an image and run one of its stages.
inline float* thread_image_buffers(int64_t elems) {
  thread_local GrowingBuffer buffer;
  return buffer.get(elems);
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
