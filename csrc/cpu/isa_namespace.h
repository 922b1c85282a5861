// The namespace the CPU kernel bodies are compiled into, once per instruction
// set: shufflenet_fused::cpu::SF_CPU_ISA. Each ISA translation unit defines
// SF_CPU_ISA (and, after its `#pragma GCC target`, includes the bodies), so
// every ISA gets its own symbols and no inline function compiled for AVX-512
// can be picked by the linker for a baseline caller. A header parsed on its
// own (an editor, clang-tidy) sees the baseline namespace.
#pragma once

#ifndef SF_CPU_ISA
#define SF_CPU_ISA baseline
#endif
