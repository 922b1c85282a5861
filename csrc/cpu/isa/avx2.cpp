// The CPU kernels compiled for AVX2 + FMA: the generic bodies, vectorised by
// the compiler for 256-bit registers.
#include "cpu/kernel_prelude.h"

#if defined(__x86_64__) || defined(_M_X64)
// Only GCC honours per-function target pragmas here; other compilers build
// these kernels for the baseline ISA (still correct, just narrower).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx2,fma,bmi2")
#endif

#define SF_CPU_ISA avx2
#include "cpu/isa_kernel_table.h"

namespace shufflenet_fused {
namespace cpu {
const KernelTable avx2_kernels = avx2::kernel_table;
}  // namespace cpu
}  // namespace shufflenet_fused
#endif
