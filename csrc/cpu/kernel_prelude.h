// Everything the per-ISA kernel translation units include, BEFORE their
// `#pragma GCC target`: library code keeps the baseline ISA, only our kernels
// (kernels.h, included after the pragma) are compiled for the wider one.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "../kernel_size_dispatch.h"
#include "../op_checks.h"
#include "../shuffle_index.h"
#include "kernel_params.h"
