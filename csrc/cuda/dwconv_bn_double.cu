// CUDA kernels of the fused ops for double input (see launcher.cuh).
#include "cuda/launcher.cuh"

SF_INSTANTIATE_CUDA(double)
