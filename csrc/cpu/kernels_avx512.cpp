// CPU kernels compiled for the avx512 instruction set; selected at run time by cpu_isa.cpp.
#include "kernel_prelude.h"

#if defined(__x86_64__) || defined(_M_X64)
// Only GCC honours per-function target pragmas here; other compilers build
// these kernels for the baseline ISA (still correct, just narrower).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi2,prefer-vector-width=512")
#endif

#define SF_CPU_ISA avx512
#define SF_CPU_HAS_AVX512 1  // enables the masked-row paths of flat_plane.h
namespace shufflenet_fused {
namespace cpu {
namespace SF_CPU_ISA {
#include "kernels.h"
}  // namespace SF_CPU_ISA
}  // namespace cpu
}  // namespace shufflenet_fused
#endif
