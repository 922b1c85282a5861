// Opens the AVX-512 translation unit (avx512/kernels.cpp): the library
// headers first, compiled for the baseline ISA, then the target pragma that
// the kernel bodies after it are compiled under, and the ISA's namespace name.
// Every header of this folder includes it first, so each parses on its own.
#pragma once

#if defined(SF_CPU_ISA) && !defined(SF_CPU_HAS_AVX512)
#error "csrc/cpu/avx512/ headers belong to the AVX-512 translation unit (avx512/kernels.cpp) only"
#endif

#include "cpu/kernel_prelude.h"

// Only GCC honours per-function target pragmas here; isa/ and setup.py keep
// other compilers on the baseline kernels. prfchw: write prefetches
// (prefetchw), which processors without it execute as a no-op.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi2,prfchw,prefer-vector-width=512")
#endif

#define SF_CPU_ISA avx512
#define SF_CPU_HAS_AVX512 1
