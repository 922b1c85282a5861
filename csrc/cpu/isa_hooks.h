// The hooks of the instruction set this translation unit is compiled for
// (see portable_hooks.h for what each one does).
#pragma once

#include "cpu/isa_namespace.h"

#if defined(SF_CPU_HAS_AVX512)
#include "cpu/avx512/hooks.h"
#else
#include "cpu/portable_hooks.h"
#endif
