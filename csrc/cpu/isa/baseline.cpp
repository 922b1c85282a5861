// The CPU kernels compiled for the baseline instruction set (what the
// compiler targets by default): the table every CPU can run.
#include "cpu/kernel_prelude.h"

#define SF_CPU_ISA baseline
#include "cpu/isa_kernel_table.h"

namespace shufflenet_fused {
namespace cpu {
const KernelTable baseline_kernels = baseline::kernel_table;
}  // namespace cpu
}  // namespace shufflenet_fused
