// The library headers of the CPU kernel translation units, included BEFORE
// their `#pragma GCC target`: library code keeps the baseline ISA, and only the
// kernel bodies included after the pragma are compiled for the wider one.
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

#include "common/bn_math.h"
#include "common/channel_map.h"
#include "common/checks.h"
#include "common/conv_geometry.h"
#include "common/kernel_size_dispatch.h"
#include "cpu/kernel_table.h"
