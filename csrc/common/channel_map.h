// The channel shuffle and which channels a fused computation touches, shared
// by the CPU and CUDA kernels (SF_HD), so the CPU test suite exercises the
// channel map the GPU runs.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace shufflenet_fused {

// The three channels of one fused "lane". Every parameter channel reads
// exactly one input channel and writes exactly one output channel, so a kernel
// that walks lanes reduces the per-channel sums (BN statistics, conv-weight
// gradient) without atomics and writes each grad_input channel exactly once.
//   shuffle_first: BN(DW(shuffle(x)))  -> output o uses params o,      input src(o)
//   shuffle_last:  shuffle(BN(DW(x)))  -> output o uses params src(o), input src(o)
struct LaneChannels {
  int64_t param;
  int64_t input;
  int64_t output;
};

// torch.nn.ChannelShuffle(groups) together with the order: output channel o
// reads input channel
//   src(o) = (o % groups) * cpg + o / groups,   cpg = C / groups,
// and dst() is its inverse. The lane_of_* functions give the lane that
// contains a given parameter, input or output channel; they are the only
// place that knows which of the three the parameters follow.
struct ChannelMap {
  int64_t groups;
  int64_t cpg;  // channels per group
  bool shuffle_last;

  SF_HD ChannelMap(int64_t channels, int64_t groups_, bool shuffle_last_)
      : groups(groups_), cpg(channels / groups_), shuffle_last(shuffle_last_) {}

  SF_HD int64_t src(int64_t o) const { return (o % groups) * cpg + o / groups; }
  SF_HD int64_t dst(int64_t c) const { return (c % cpg) * groups + c / cpg; }

  // The parameters follow the input channel (shuffle_last) or the output one.
  SF_HD LaneChannels lane(int64_t input, int64_t output) const {
    return LaneChannels{shuffle_last ? input : output, input, output};
  }
  SF_HD LaneChannels lane_of_output(int64_t o) const { return lane(src(o), o); }
  SF_HD LaneChannels lane_of_input(int64_t c) const { return lane(c, dst(c)); }
  SF_HD LaneChannels lane_of_param(int64_t p) const {
    return shuffle_last ? lane_of_input(p) : lane_of_output(p);
  }
};

// The lanes of output channels o = 0, 1, ... in order, without a division per
// channel (o = q * groups + r reads input r * cpg + q), for the host loops that
// fold per-channel parameters on every call. A walker rather than a callback:
// the CPU kernels are compiled per ISA, and a callback compiled for one ISA is
// not inlined into a loop compiled for another.
struct OutputChannelWalk {
  ChannelMap map;
  int64_t o = 0, q = 0, r = 0;

  explicit OutputChannelWalk(const ChannelMap& m) : map(m) {}
  void next() {
    ++o;
    if (++r == map.groups) r = 0, ++q;
  }
  LaneChannels lane() const { return map.lane(r * map.cpg + q, o); }
};

}  // namespace shufflenet_fused
