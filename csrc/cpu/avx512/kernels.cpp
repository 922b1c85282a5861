// The CPU kernels compiled for AVX-512 (F, VL, BW, DQ): the generic bodies
// with the AVX-512 paths of this folder behind their hooks (hooks.h).
#if defined(__x86_64__) || defined(_M_X64)
#include "cpu/avx512/target.h"
#include "cpu/isa_kernel_table.h"

namespace shufflenet_fused {
namespace cpu {
const KernelTable avx512_kernels = avx512::kernel_table;
}  // namespace cpu
}  // namespace shufflenet_fused
#endif
