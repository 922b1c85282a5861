// Test-only ops that expose the shared index math (common/channel_map.h,
// common/conv_geometry.h) to the Python tests, which check it against
// brute-force definitions. Built only with SHUFFLENET_FUSED_TEST_OPS=1.
//
//   _debug_channel_map(C, groups)     src, dst and the parameter channel of each
//                                     input lane (both orders); also checks the
//                                     division-free OutputChannelWalk against
//                                     lane_of_output
//   _debug_windows(size, k, stride)   valid_taps / covering_outputs
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "common/channel_map.h"
#include "common/conv_geometry.h"

namespace shufflenet_fused {
namespace {

// Rows: src(i), dst(i), parameter channel of input lane i (shuffle_first),
// parameter channel of input lane i (shuffle_last).
at::Tensor debug_channel_map(int64_t channels, int64_t groups) {
  TORCH_CHECK(channels >= 1 && groups >= 1 && channels % groups == 0, "shufflenet_fused: groups=", groups,
              " must be >= 1 and divide channels=", channels);
  at::Tensor out = at::empty({4, channels}, at::kLong);
  int64_t* d = out.data_ptr<int64_t>();
  const ChannelMap first(channels, groups, false), last(channels, groups, true);
  for (int64_t i = 0; i < channels; ++i) {
    d[i] = first.src(i);
    d[channels + i] = first.dst(i);
    d[2 * channels + i] = first.lane_of_input(i).param;
    d[3 * channels + i] = last.lane_of_input(i).param;
  }
  for (const ChannelMap& map : {first, last}) {
    for (OutputChannelWalk walk(map); walk.o < channels; walk.next()) {
      const LaneChannels a = walk.lane(), b = map.lane_of_output(walk.o);
      TORCH_CHECK(a.param == b.param && a.input == b.input && a.output == b.output,
                  "shufflenet_fused: OutputChannelWalk disagrees with lane_of_output at o=", walk.o);
    }
  }
  return out;
}

// (outputs x 2): valid_taps of each output; (size x 4): covering_outputs
// (clamped) and first/last_covering_output (unclamped) of each input.
std::tuple<at::Tensor, at::Tensor> debug_windows(int64_t size, int64_t k, int64_t stride) {
  TORCH_CHECK(size >= 1 && k >= 1 && stride >= 1, "shufflenet_fused: bad window arguments");
  const int64_t out = conv_out_size(size, k, stride);
  at::Tensor taps = at::empty({out, 2}, at::kLong);
  at::Tensor cover = at::empty({size, 4}, at::kLong);
  int64_t* t = taps.data_ptr<int64_t>();
  int64_t* c = cover.data_ptr<int64_t>();
  for (int64_t o = 0; o < out; ++o) valid_taps(o, size, k, stride, &t[2 * o], &t[2 * o + 1]);
  for (int64_t i = 0; i < size; ++i) {
    covering_outputs(i, out, k, stride, &c[4 * i], &c[4 * i + 1]);
    c[4 * i + 2] = first_covering_output(i, k, stride);
    c[4 * i + 3] = last_covering_output(i, k, stride);
  }
  return {taps, cover};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  m.def("_debug_channel_map(int channels, int groups) -> Tensor", &debug_channel_map);
  m.def("_debug_windows(int size, int k, int stride) -> (Tensor, Tensor)", &debug_windows);
}

}  // namespace shufflenet_fused
