// The inference pipeline of one instruction set: the whole plan (stem,
// blocks, head pooling, classifier). At N >= threads each thread runs groups
// of its images through the whole network in its own buffers (image_groups.h),
// then the classifier runs over the batch; below that, images one after the
// other, each layer split across the threads (batch_one.h). See
// docs/inference.md.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "cpu/inference/batch_one.h"
#include "cpu/inference/image_groups.h"
#include "cpu/inference/network_plan.h"
#include "cpu/inference/team.h"
#include "cpu/inference/thread_buffers.h"
#include "cpu/isa_namespace.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
namespace infer {

inline void infer_network(const InferParams& p) {
  const NetworkPlan& P = p.plan;
  if (!splits_layers(P.N, at::get_num_threads(), at::in_parallel_region())) {
    at::parallel_for(0, P.N, 1, [&](int64_t n0, int64_t n1) { run_images_grouped(P, p.x, p.y, n0, n1); });
    if (p.logits != nullptr) {
      // The classifier over the whole batch, its classes split across the
      // threads in groups of four rows (the tile height of the kernels).
      const int64_t quads = (P.classes + 3) / 4;
      at::parallel_for(0, quads, 1, [&](int64_t q0, int64_t q1) {
        Stages::classifier(P.head_w, P.head_b, p.y, P.out_C, P.N, p.logits, P.classes, 4 * q0,
                           std::min(P.classes, 4 * q1));
      });
    }
    return;
  }
  const int64_t in_elems = P.C * P.H * P.W;
  const int64_t out_elems = P.has_head ? P.out_C : P.out_C * P.out_H * P.out_W;
  const ImageBuffers buf(P, thread_image_buffers(ImageBuffers::elems(P)));
  run_team([&](const Team& team) {
    for (int64_t n = 0; n < P.N; ++n) {
      run_image_split(P, p.x + n * in_elems, p.y + n * out_elems, buf, team);
      if (p.logits != nullptr) classify_split(P, p.y + n * out_elems, p.logits + n * P.classes, team);
    }
  });
}

}  // namespace infer
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
