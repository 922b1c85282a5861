// NCHW eval: BN with running statistics folded into a per-channel scale and
// shift. The generic kernel walks (output channel, block of planes) tasks
// through the flat stack (flat_stack.h) unless the ISA takes the whole op
// (hooks::try_eval).
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/channel_map.h"
#include "common/checks.h"
#include "common/kernel_size_dispatch.h"
#include "cpu/flat_stack.h"
#include "cpu/isa_hooks.h"
#include "cpu/isa_namespace.h"
#include "cpu/kernel_table.h"
#include "cpu/plane_loops.h"

namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {

template <typename scalar_t>
void eval_kernel(const EvalParams& P) {
  using acc_t = at::opmath_type<scalar_t>;
  const ConvGeometry& g = P.g;
  if (hooks::try_eval<scalar_t>(P)) return;
  const FlatStack f(g);
  const ChannelMap map(g.C, P.groups, P.shuffle_last);
  const std::vector<acc_t> w(P.weight.begin(), P.weight.end());
  const scalar_t* xd = P.x.data_ptr<scalar_t>();
  scalar_t* yd = P.y.data_ptr<scalar_t>();
  const int64_t KK = g.K * g.K;
  const int64_t nblocks = f.blocks(g.N);

  dispatch_kernel_size(g.K, g.stride, [&](auto k_tag, auto s_tag) {
    constexpr int K = decltype(k_tag)::value;
    constexpr int S = decltype(s_tag)::value;
    // Tasks: (output channel, block of planes).
    at::parallel_for(0, g.C * nblocks, grain_for(f.planes * g.Ho * g.Wo), [&](int64_t begin, int64_t end) {
      Scratch<acc_t> xp(f.buffer_size()), z(f.flat_size(f.planes));
      int64_t last_nb = f.planes;
      for (int64_t task = begin; task < end; ++task) {
        const LaneChannels lane = map.lane_of_output(task / nblocks);
        const int64_t n0 = (task % nblocks) * f.planes;
        const int64_t nb = std::min(f.planes, g.N - n0);
        clear_if_shrunk(nb, &last_nb, xp.get(), f.buffer_size());
        stage_planes(xd, g, f, lane.input, n0, nb, xp.get());
        conv_flat<K, S>(xp.get(), f.Wp, f.flat_size(nb), w.data() + lane.param * KK, z.get());
        const acc_t a = static_cast<acc_t>(P.scale[lane.param]);
        const acc_t b = static_cast<acc_t>(P.shift[lane.param]);
        for (int64_t p = 0; p < nb; ++p)
          hooks::affine_block(z.get() + f.out_offset(p), f.Wp, g.Ho, g.Wo,
                       yd + ((n0 + p) * g.C + lane.output) * g.Ho * g.Wo, g.Wo, a, b);
      }
    });
  });
}

}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
