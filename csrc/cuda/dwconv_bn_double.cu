// CUDA kernels of the fused ops for double input (see entry_impl.cuh).
#include "entry_impl.cuh"

SHUFFLENET_FUSED_INSTANTIATE_CUDA(double)
