// CPU entry of shufflenet_v1_infer: checks the arguments, folds every
// BatchNorm for this call, builds the NetworkPlan, runs the active ISA's
// pipeline (the classifier included).
//
// The op takes the modules' own tensors and folds on every call (per channel,
// in float32 as eval-mode F.batch_norm does, into per-thread memory reused
// across calls; tens of microseconds for a whole network; the 1x1 conv weights
// are used as they are, their BN applied in the kernel's epilogue), so a model
// edited in place between calls can never run stale folded weights.
//
// plan (ints): [has_stem, has_head, B, then per block: inp, oup, mid,
//               groups1, groups2, stride, shuffle_groups]
//   shuffle_groups: the `groups` of the channel shuffle after the depthwise
//   conv (torch.nn.ChannelShuffle; 1 for none).
// params (float32, contiguous; "?" may be None), each conv with its BN:
//   conv weight, conv bias?, bn weight?, bn bias?, running_mean, running_var
//   stem (has_stem): the 3x3/2 conv (C0, C, 3, 3) and its BN
//   per block: pw1 (mid, inp / groups1, 1, 1), dw (mid, 1, 3, 3),
//              pw2 (c2, mid / groups2, 1, 1), each with its BN;
//              c2 = oup (stride 1) or oup - inp (stride 2)
//   head (has_head): classifier weight (classes, C_last), bias?
// eps: one per BatchNorm, in the order above.
// Returns (N, C_last, H_last, W_last), or (N, classes) with a head.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "cpu/inference/network_plan.h"
#include "cpu/kernel_table.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

constexpr int64_t kPlanHeader = 3, kBlockInts = 7;
constexpr const char* kOp = "shufflenet_v1_infer: ";

using ParamList = c10::List<std::optional<at::Tensor>>;

// Which layer an argument belongs to, for error messages: built into a string
// only when a check fails.
struct Where {
  int64_t block;  // -1: not in a block
  const char* layer;
};
std::ostream& operator<<(std::ostream& os, const Where& w) {
  if (w.block >= 0) os << "block " << w.block << ".";
  return os << w.layer;
}

// Memory for what a call folds (BN scales and shifts, depthwise taps, the
// shuffle map), per thread and reused: a call would otherwise allocate (and,
// past malloc's mmap threshold, page-fault) a few hundred KB. Chunks never
// move, so the plan can point into them; reset() at the start of each call
// (the op never runs inside itself on one thread).
template <typename T>
class CallArena {
 public:
  void reset() { chunk_ = used_ = 0; }
  T* take(int64_t n) {
    while (chunk_ < chunks_.size() && used_ + n > sizes_[chunk_]) ++chunk_, used_ = 0;
    if (chunk_ == chunks_.size()) {
      sizes_.push_back(std::max<int64_t>(n, kChunk));
      chunks_.emplace_back(new T[sizes_.back()]);
      used_ = 0;
    }
    T* p = chunks_[chunk_].get() + used_;
    used_ += n;
    return p;
  }

 private:
  static constexpr int64_t kChunk = 64 * 1024;
  std::vector<std::unique_ptr<T[]>> chunks_;
  std::vector<int64_t> sizes_;
  size_t chunk_ = 0;
  int64_t used_ = 0;
};

// Reads params and eps in order, checking each tensor's dtype, device, layout
// and shape, and folds each conv's BatchNorm.
class ArgReader {
 public:
  ArgReader(const ParamList& params, at::ArrayRef<double> eps) : params_(params), eps_(eps) {
    floats().reset();
    ints().reset();
  }

  static CallArena<float>& floats() {
    thread_local CallArena<float> arena;
    return arena;
  }
  static CallArena<int64_t>& ints() {
    thread_local CallArena<int64_t> arena;
    return arena;
  }

  // nullptr for an absent optional tensor.
  const float* tensor(Where where, const char* part, at::IntArrayRef shape, bool required = true) {
    TORCH_CHECK_VALUE(index_ < params_.size(), kOp, "params has ", params_.size(),
                      " entries, fewer than the plan needs (missing ", where, part, ")");
    const std::optional<at::Tensor> t = params_.get(index_++);
    if (!t.has_value()) {
      TORCH_CHECK_VALUE(!required, kOp, where, part, " must be a tensor, got None");
      return nullptr;
    }
    TORCH_CHECK_TYPE(t->scalar_type() == at::kFloat, kOp, where, part, " must be float32, got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->device().is_cpu(), kOp, where, part, " must be on the CPU, got ", t->device());
    TORCH_CHECK_VALUE(t->sizes() == shape, kOp, where, part, " must have shape ", shape, ", got ", t->sizes());
    TORCH_CHECK_VALUE(t->is_contiguous(), kOp, where, part, " must be contiguous");
    return t->data_ptr<float>();
  }

  // The size of dimension 0 of the next tensor (to read a layer's width).
  int64_t peek_size(Where where, int64_t dims) const {
    TORCH_CHECK_VALUE(index_ < params_.size(), kOp, "params has ", params_.size(),
                      " entries, fewer than the plan needs (missing ", where, ".weight)");
    const std::optional<at::Tensor> t = params_.get(index_);
    TORCH_CHECK_VALUE(t.has_value() && t->dim() == dims, kOp, where, ".weight must be a ", dims, "-D tensor");
    return t->size(0);
  }

  float next_eps(Where where) {
    TORCH_CHECK_VALUE(eps_index_ < eps_.size(), kOp, "eps has ", eps_.size(),
                      " values, fewer than the plan's BatchNorm layers (missing ", where, ".bn)");
    const double e = eps_[eps_index_++];
    TORCH_CHECK_VALUE(std::isfinite(e) && e >= 0, kOp, where, ".bn eps must be finite and >= 0, got ", e);
    return static_cast<float>(e);
  }

  // A conv and its BN: the conv weight, and scale/shift per output channel.
  struct ConvBn {
    const float* w;
    float* scale;
    float* shift;
  };
  ConvBn conv_bn(Where where, at::IntArrayRef w_shape) {
    const int64_t C = w_shape[0];
    const float* w = tensor(where, ".weight", w_shape);
    const float* bias = tensor(where, ".bias", {C}, false);
    const float* gamma = tensor(where, ".bn.weight", {C}, false);
    const float* beta = tensor(where, ".bn.bias", {C}, false);
    const float* mean = tensor(where, ".bn.running_mean", {C});
    const float* var = tensor(where, ".bn.running_var", {C});
    const float eps = next_eps(where);
    float* scale = floats().take(C);
    float* shift = floats().take(C);
    // In float32, as eval-mode F.batch_norm computes its per-channel terms.
    for (int64_t c = 0; c < C; ++c) {
      const float a = (gamma != nullptr ? gamma[c] : 1.0f) / std::sqrt(var[c] + eps);
      scale[c] = a;
      shift[c] = (beta != nullptr ? beta[c] : 0.0f) + ((bias != nullptr ? bias[c] : 0.0f) - mean[c]) * a;
    }
    return ConvBn{w, scale, shift};
  }

  void finish() const {
    TORCH_CHECK_VALUE(index_ == params_.size(), kOp, "params has ", params_.size(), " entries, the plan uses ",
                      index_);
    TORCH_CHECK_VALUE(eps_index_ == eps_.size(), kOp, "eps has ", eps_.size(), " values, the plan uses ",
                      eps_index_);
  }

 private:
  const ParamList& params_;
  at::ArrayRef<double> eps_;
  size_t index_ = 0, eps_index_ = 0;
};

BlockPlan read_block(const int64_t* ints, int64_t H, int64_t W, int64_t channels, ArgReader& args, int64_t index) {
  BlockPlan b;
  b.inp = ints[0];
  b.oup = ints[1];
  b.mid = ints[2];
  const int64_t g1 = ints[3], g2 = ints[4], shuffle = ints[6];
  b.stride = ints[5];
  TORCH_CHECK_VALUE(b.stride == 1 || b.stride == 2, kOp, "block ", index, " stride must be 1 or 2, got ", b.stride);
  TORCH_CHECK_VALUE(b.inp == channels, kOp, "block ", index, " takes ", b.inp, " channels, its input has ", channels);
  const int64_t c2 = b.stride == 1 ? b.oup : b.oup - b.inp;
  TORCH_CHECK_VALUE(b.inp > 0 && b.mid > 0 && c2 > 0 && (b.stride == 2 || b.oup == b.inp), kOp, "block ", index,
                    " has inp=", b.inp, ", oup=", b.oup, ", mid=", b.mid,
                    ": stride 1 needs oup == inp, stride 2 oup > inp");
  TORCH_CHECK_VALUE(g1 > 0 && b.inp % g1 == 0 && b.mid % g1 == 0, kOp, "block ", index, " groups1=", g1,
                    " must divide inp=", b.inp, " and mid=", b.mid);
  TORCH_CHECK_VALUE(g2 > 0 && b.mid % g2 == 0 && c2 % g2 == 0, kOp, "block ", index, " groups2=", g2,
                    " must divide mid=", b.mid, " and its ", c2, " output channels");
  TORCH_CHECK_VALUE(shuffle > 0 && b.mid % shuffle == 0, kOp, "block ", index, " shuffle_groups=", shuffle,
                    " must divide mid=", b.mid);
  b.H = H;
  b.W = W;
  b.Ho = window3_out(H, b.stride);
  b.Wo = window3_out(W, b.stride);

  // The shuffle after the depthwise conv, folded into pw1's stores: shuffled
  // plane j holds channel src(j), so pw1 stores channel c to plane dst(c) and
  // plane j gets channel src(j)'s depthwise taps and BN. This runs on every
  // call, so the planes are walked in order without a division per channel
  // (OutputChannelWalk), and dst is filled as src's inverse on the way.
  const ChannelMap map(b.mid, shuffle, /*shuffle_last=*/true);
  const ArgReader::ConvBn pw1 = args.conv_bn(Where{index, "pw1"}, {b.mid, b.inp / g1, 1, 1});
  int64_t* dst = ArgReader::ints().take(b.mid);
  b.pw1 = PointwiseLayer{pw1.w, pw1.scale, pw1.shift, dst, b.inp, b.mid, g1};

  const ArgReader::ConvBn dw = args.conv_bn(Where{index, "dw"}, {b.mid, 1, 3, 3});
  float* taps = ArgReader::floats().take(b.mid * 9);
  float* shift = ArgReader::floats().take(b.mid);
  int64_t* late = nullptr;
  float *late_scale = nullptr, *late_shift = nullptr;
  for (OutputChannelWalk walk(map); walk.o < b.mid; walk.next()) {
    const int64_t j = walk.o, c = walk.lane().input;
    dst[c] = j;
    // Folding a non-finite scale into the taps would change the NaN/Inf
    // pattern (w * inf summed over taps is NaN where conv * inf is +-inf);
    // such a plane keeps its taps as they are (w * 1 is w, NaN and Inf too).
    const bool folds = ScaleShift{dw.scale[c], dw.shift[c]}.foldable();
    const float tap_scale = folds ? dw.scale[c] : 1.0f;
    for (int t = 0; t < 9; ++t) taps[j * 9 + t] = dw.w[c * 9 + t] * tap_scale;
    shift[j] = folds ? dw.shift[c] : 0.0f;
    if (folds) continue;
    if (late == nullptr) {
      late = ArgReader::ints().take(b.mid);
      late_scale = ArgReader::floats().take(b.mid);
      late_shift = ArgReader::floats().take(b.mid);
    }
    late[b.dw_late_count] = j;
    late_scale[b.dw_late_count] = dw.scale[c];
    late_shift[b.dw_late_count++] = dw.shift[c];
  }
  b.dw = taps;
  b.dw_bias = shift;
  b.dw_late = late;
  b.dw_late_scale = late_scale;
  b.dw_late_shift = late_shift;

  const ArgReader::ConvBn pw2 = args.conv_bn(Where{index, "pw2"}, {c2, b.mid / g2, 1, 1});
  b.pw2 = PointwiseLayer{pw2.w, pw2.scale, pw2.shift, nullptr, b.mid, c2, g2};
  return b;
}

at::Tensor shufflenet_v1_infer_cpu(const at::Tensor& input, const ParamList& params, at::ArrayRef<double> eps,
                                   at::IntArrayRef plan_ints) {
  TORCH_CHECK_VALUE(input.dim() == 4, kOp, "input must be 4-D (N, C, H, W), got ", input.dim(), "-D");
  TORCH_CHECK_TYPE(input.scalar_type() == at::kFloat, kOp, "input must be float32, got ", input.scalar_type());
  TORCH_CHECK_VALUE(input.device().is_cpu(), kOp, "input must be on the CPU, got ", input.device());
  TORCH_CHECK_VALUE(plan_ints.size() >= kPlanHeader, kOp, "plan must start with [has_stem, has_head, blocks]");
  const int64_t blocks = plan_ints[2];
  TORCH_CHECK_VALUE(blocks >= 0 && static_cast<int64_t>(plan_ints.size()) == kPlanHeader + kBlockInts * blocks, kOp,
                    "plan has ", plan_ints.size(), " ints, expected ", kPlanHeader, " + ", kBlockInts, " per block");
  NetworkPlan P;
  P.N = input.size(0);
  P.C = input.size(1);
  P.H = input.size(2);
  P.W = input.size(3);
  P.has_stem = plan_ints[0] != 0;
  P.has_head = plan_ints[1] != 0;
  TORCH_CHECK_VALUE(P.C > 0 && P.H > 0 && P.W > 0, kOp, "input must have C, H, W > 0, got ", input.sizes());
  ArgReader args(params, eps);
  int64_t C = P.C, H = P.H, W = P.W;
  if (P.has_stem) {
    StemPlan& s = P.stem;
    s.cin = C;
    s.cout = args.peek_size(Where{-1, "stem"}, 4);
    const ArgReader::ConvBn conv = args.conv_bn(Where{-1, "stem"}, {s.cout, C, 3, 3});
    float* w = ArgReader::floats().take(s.cout * C * 9);
    for (int64_t co = 0, i = 0; co < s.cout; ++co)
      for (int64_t t = 0; t < C * 9; ++t, ++i) w[i] = conv.w[i] * conv.scale[co];
    s.w = w;
    s.b = conv.shift;
    s.H = H;
    s.W = W;
    s.Hc = window3_out(H, 2);
    s.Wc = window3_out(W, 2);
    s.Hp = window3_out(s.Hc, 2);
    s.Wp = window3_out(s.Wc, 2);
    C = s.cout;
    H = s.Hp;
    W = s.Wp;
  }
  P.blocks.reserve(blocks);
  for (int64_t i = 0; i < blocks; ++i) {
    P.blocks.push_back(read_block(plan_ints.data() + kPlanHeader + kBlockInts * i, H, W, C, args, i));
    C = P.blocks.back().oup;
    H = P.blocks.back().Ho;
    W = P.blocks.back().Wo;
  }
  P.out_C = C;
  P.out_H = H;
  P.out_W = W;
  if (P.has_head) {
    constexpr int64_t K = NetworkPlan::kHeadWindow;
    TORCH_CHECK_VALUE(H >= K && H < 2 * K && W >= K && W < 2 * K, kOp, "the head's AvgPool2d(", K,
                      ") must give 1x1, but the last feature map is ", H, "x", W);
    P.classes = args.peek_size(Where{-1, "classifier"}, 2);
    P.head_w = args.tensor(Where{-1, "classifier"}, ".weight", {P.classes, C});
    P.head_b = args.tensor(Where{-1, "classifier"}, ".bias", {P.classes}, false);
  }
  args.finish();

  const at::Tensor x = input.contiguous();
  const auto opts = input.options();
  // With a head the pipeline computes the classifier too; y then holds the
  // pooled features.
  at::Tensor y = P.has_head ? at::empty({P.N, C}, opts) : at::empty({P.N, C, H, W}, opts);
  at::Tensor logits = P.has_head ? at::empty({P.N, P.classes}, opts) : at::Tensor();
  if (P.N > 0)
    active_kernels().infer(InferParams{P, x.data_ptr<float>(), y.data_ptr<float>(),
                                       P.has_head ? logits.data_ptr<float>() : nullptr});
  return P.has_head ? logits : y;
}

}  // namespace

TORCH_LIBRARY_IMPL(shufflenet_fused, CPU, m) { m.impl("shufflenet_v1_infer", &shufflenet_v1_infer_cpu); }

}  // namespace cpu
}  // namespace shufflenet_fused
