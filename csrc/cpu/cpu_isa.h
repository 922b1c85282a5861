// Run-time choice of the instruction set the CPU kernels run with. A new ISA
// adds its enum value, its detection in cpu_isa.cpp, a translation unit that
// defines its KernelTable (kernel_table.h) and one case in active_kernels().
#pragma once

#include <string>

namespace shufflenet_fused {
namespace cpu {

enum class CpuIsa { baseline = 0, avx2 = 1, avx512 = 2 };

// The widest ISA this CPU supports, unless overridden: by the environment
// variable SHUFFLENET_FUSED_CPU_ISA (baseline|avx2|avx512, read once) or by
// set_cpu_isa() (the test-only op shufflenet_fused::_cpu_isa).
CpuIsa active_cpu_isa();
const char* cpu_isa_name(CpuIsa isa);

}  // namespace cpu
}  // namespace shufflenet_fused
