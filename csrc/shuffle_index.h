// Channel map and window/border math shared by the CPU and CUDA kernels.
//
// Everything here is __host__ __device__ and header-only on purpose: the CPU
// kernels (and therefore the CPU test suite) exercise exactly the index math
// that the GPU runs.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SF_HD __host__ __device__ __forceinline__
#else
#define SF_HD inline
#endif

namespace shufflenet_fused {

// torch.nn.ChannelShuffle(groups): output channel o reads input channel
//   src(o) = (o % groups) * cpg + o / groups,   cpg = C / groups.
// dst() is its inverse: input channel c lands in output channel dst(c).
struct ChannelMap {
  int64_t groups;
  int64_t cpg;  // channels per group

  SF_HD ChannelMap(int64_t channels, int64_t groups_)
      : groups(groups_), cpg(channels / groups_) {}

  SF_HD int64_t src(int64_t o) const { return (o % groups) * cpg + o / groups; }
  SF_HD int64_t dst(int64_t c) const { return (c % cpg) * groups + c / cpg; }
};

// The three channels that one fused "lane" touches. Every parameter channel p
// reads exactly one input channel and writes exactly one output channel, so a
// kernel that walks parameter channels never needs atomics for the per-channel
// reductions (BN statistics, conv-weight gradient) and writes each grad_input
// channel exactly once.
//   shuffle_first: BN(DW(shuffle(x)))   -> out o uses params o,      input src(o)
//   shuffle_last:  shuffle(BN(DW(x)))   -> out o uses params src(o), input src(o)
struct LaneChannels {
  int64_t param;
  int64_t input;
  int64_t output;
};

SF_HD LaneChannels lane_for_param(const ChannelMap& map, int64_t p, bool shuffle_last) {
  LaneChannels l;
  l.param = p;
  if (shuffle_last) {
    l.input = p;
    l.output = map.dst(p);
  } else {
    l.input = map.src(p);
    l.output = p;
  }
  return l;
}

SF_HD LaneChannels lane_for_output(const ChannelMap& map, int64_t o, bool shuffle_last) {
  LaneChannels l;
  l.output = o;
  l.input = map.src(o);
  l.param = shuffle_last ? l.input : o;
  return l;
}

// The output channels o = 0, 1, ... in order with the input channel each
// reads, map.src(o), without a division per channel (o = q * groups + r reads
// r * cpg + q): for the host loops that fold per-channel parameters on every
// call. (A walker rather than a callback: the CPU kernels are compiled per ISA,
// and a callback compiled for AVX-512 cannot be inlined into a baseline loop.)
struct OutputChannelWalk {
  ChannelMap map;
  int64_t o = 0, q = 0, r = 0;

  explicit OutputChannelWalk(const ChannelMap& m) : map(m) {}
  void next() {
    ++o;
    if (++r == map.groups) r = 0, ++q;
  }
  // lane_for_output(map, o, shuffle_last)
  LaneChannels lane(bool shuffle_last) const {
    const int64_t input = r * map.cpg + q;
    return {shuffle_last ? input : o, input, o};
  }
};

// Depthwise conv geometry: padding k/2, no dilation.
SF_HD int64_t conv_pad(int64_t k) { return k / 2; }

SF_HD int64_t conv_out_size(int64_t in, int64_t k, int64_t stride) {
  return (in + 2 * conv_pad(k) - k) / stride + 1;
}

// First input coordinate of the window of output coordinate `o` (may be < 0).
SF_HD int64_t window_start(int64_t o, int64_t k, int64_t stride) {
  return o * stride - conv_pad(k);
}

// Taps [*t_begin, *t_end) of the window of output `o` that fall inside [0, in).
SF_HD void valid_taps(int64_t o, int64_t in, int64_t k, int64_t stride,
                      int64_t* t_begin, int64_t* t_end) {
  const int64_t s = window_start(o, k, stride);
  const int64_t b = s < 0 ? -s : 0;
  const int64_t e = (in - s) < k ? (in - s) : k;
  *t_begin = b;
  *t_end = e > b ? e : b;
}

// Outputs [*o_begin, *o_end) whose window covers input coordinate `i`
// (the transposed-conv side, used for grad_input).
SF_HD void covering_outputs(int64_t i, int64_t out, int64_t k, int64_t stride,
                            int64_t* o_begin, int64_t* o_end) {
  const int64_t pad = conv_pad(k);
  // o*stride - pad <= i  and  o*stride - pad + k - 1 >= i
  const int64_t hi = i + pad;               // o*stride <= hi
  const int64_t lo = i + pad - (k - 1);     // o*stride >= lo
  int64_t b = lo <= 0 ? 0 : (lo + stride - 1) / stride;
  int64_t e = hi / stride + 1;
  if (e > out) e = out;
  *o_begin = b;
  *o_end = e > b ? e : b;
}

}  // namespace shufflenet_fused
