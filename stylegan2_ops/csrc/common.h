// Shared helpers for the stylegan2_ops CUDA kernels: argument checks and integer division
// that rounds towards minus infinity (coordinates can be negative when padding crops).
#pragma once

#include <cstdint>
#include <limits>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#if defined(__CUDACC__)
#define SG2_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SG2_HOST_DEVICE inline
#endif

namespace sg2 {

// floor(a / b) for b > 0.
SG2_HOST_DEVICE int floor_div(int a, int b) {
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// ceil(a / b) for b > 0.
SG2_HOST_DEVICE int ceil_div(int a, int b) { return -floor_div(-a, b); }

inline void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "stylegan2_ops: ", name, " must be a CUDA tensor, got ", t.device());
}

inline void check_int32_indexable(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.numel() <= std::numeric_limits<int32_t>::max(),
              "stylegan2_ops: ", name, " has ", t.numel(),
              " elements; the kernels index with 32-bit integers (at most 2^31 - 1)");
}

}  // namespace sg2
