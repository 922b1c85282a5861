// CUDA kernels of the fused ops for half input (see launcher.cuh).
#include "cuda/launcher.cuh"

SF_INSTANTIATE_CUDA(c10::Half)
