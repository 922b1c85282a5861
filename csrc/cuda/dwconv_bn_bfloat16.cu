// CUDA kernels of the fused ops for bfloat16 input (see entry_impl.cuh).
#include "entry_impl.cuh"

SHUFFLENET_FUSED_INSTANTIATE_CUDA(c10::BFloat16)
