// CUDA kernels of the fused ops for bfloat16 input (see launcher.cuh).
#include "cuda/launcher.cuh"

SF_INSTANTIATE_CUDA(c10::BFloat16)
