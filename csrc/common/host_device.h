// SF_HD marks the functions that both the CPU and the CUDA kernels call:
// __host__ __device__ under nvcc, plain inline elsewhere. SF_UNROLL asks nvcc
// to unroll a loop, SF_NO_UNROLL not to (host compilers decide for
// themselves).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SF_HD __host__ __device__ __forceinline__
#else
#define SF_HD inline
#endif

#if defined(__CUDACC__)
#define SF_UNROLL _Pragma("unroll")
#define SF_NO_UNROLL _Pragma("unroll 1")
#else
#define SF_UNROLL
#define SF_NO_UNROLL
#endif
