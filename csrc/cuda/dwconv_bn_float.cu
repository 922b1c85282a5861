// CUDA kernels of the fused ops for float input (see launcher.cuh).
#include "cuda/launcher.cuh"

SF_INSTANTIATE_CUDA(float)
