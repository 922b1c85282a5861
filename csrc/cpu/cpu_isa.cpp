// Detects the CPU's vector ISA once, lets tests pin a narrower one (so every
// dispatch level that can run on a machine is tested there), and maps the ISA
// in effect to its kernel table.
#include "cpu/cpu_isa.h"

#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "cpu/kernel_table.h"

namespace shufflenet_fused {
namespace cpu {
namespace {

CpuIsa detect_cpu_isa() {
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return CpuIsa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::avx2;
#endif
  return CpuIsa::baseline;
}

CpuIsa parse_cpu_isa(const std::string& name) {
  if (name == "baseline") return CpuIsa::baseline;
  if (name == "avx2") return CpuIsa::avx2;
  if (name == "avx512") return CpuIsa::avx512;
  TORCH_CHECK(false, "shufflenet_fused: unknown CPU ISA '", name, "' (expected baseline, avx2 or avx512)");
}

CpuIsa supported_cpu_isa() {
  static const CpuIsa supported = detect_cpu_isa();
  return supported;
}

CpuIsa checked(CpuIsa wanted) {
  TORCH_CHECK(static_cast<int>(wanted) <= static_cast<int>(supported_cpu_isa()), "shufflenet_fused: CPU ISA '",
              cpu_isa_name(wanted), "' is not supported by this CPU (widest: ", cpu_isa_name(supported_cpu_isa()),
              ")");
  return wanted;
}

CpuIsa initial_cpu_isa() {
  const char* env = std::getenv("SHUFFLENET_FUSED_CPU_ISA");
  if (env == nullptr || *env == '\0' || std::string(env) == "auto") return supported_cpu_isa();
  return checked(parse_cpu_isa(env));
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_cpu_isa())};
  return slot;
}

// "" queries, "auto" restores the widest supported ISA, a name pins it.
// Returns the ISA in effect afterwards.
std::string set_cpu_isa(const std::string& name) {
  if (name == "auto") {
    active_slot().store(static_cast<int>(supported_cpu_isa()));
  } else if (!name.empty()) {
    active_slot().store(static_cast<int>(checked(parse_cpu_isa(name))));
  }
  return cpu_isa_name(active_cpu_isa());
}

}  // namespace

CpuIsa active_cpu_isa() { return static_cast<CpuIsa>(active_slot().load(std::memory_order_relaxed)); }

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::avx512:
      return "avx512";
    case CpuIsa::avx2:
      return "avx2";
    default:
      return "baseline";
  }
}

const KernelTable& active_kernels() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (active_cpu_isa()) {
    case CpuIsa::avx512:
      return avx512_kernels;
    case CpuIsa::avx2:
      return avx2_kernels;
    default:
      return baseline_kernels;
  }
#else
  return baseline_kernels;
#endif
}

TORCH_LIBRARY_FRAGMENT(shufflenet_fused, m) {
  // Test/benchmark hook, not part of the stable API.
  m.def("_cpu_isa(str isa) -> str", &set_cpu_isa);
}

}  // namespace cpu
}  // namespace shufflenet_fused
