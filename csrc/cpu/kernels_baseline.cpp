// CPU kernels compiled for the baseline instruction set; selected at run time by cpu_isa.cpp.
#include "kernel_prelude.h"

#define SF_CPU_ISA baseline
namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
#include "kernels.h"
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
