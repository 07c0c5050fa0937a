// CUDA kernels for bias_act: forward, and the first/second derivative w.r.t. the input.
//
// All arithmetic runs in the op-math type (float for half/bfloat16/float, double for double)
// and rounds once on store. The bias index of flat memory offset i is (i / step) % channels,
// which holds for any dense layout (contiguous, channels_last, ...).

#include <algorithm>
#include <limits>

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "bias_act.h"
#include "common.h"

namespace sg2 {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 65535 * 4;  // grid-stride beyond this

// Beyond +-80 the exponential-based activations are saturated in any precision we use.
constexpr float kExpRange = 80.0f;
constexpr double kSeluScale = 1.0507009873554805;
constexpr double kSeluAlpha = 1.6732632423543772;

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float expm1_(float v) { return expm1f(v); }
__device__ __forceinline__ double expm1_(double v) { return expm1(v); }
__device__ __forceinline__ float log1p_(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_(double v) { return log1p(v); }
__device__ __forceinline__ float tanh_(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_(double v) { return tanh(v); }
__device__ __forceinline__ float abs_(float v) { return fabsf(v); }
__device__ __forceinline__ double abs_(double v) { return fabs(v); }

template <typename T>
__device__ __forceinline__ T sigmoid_(T z) {
  if (z < T(-kExpRange)) return T(0);
  if (z > T(kExpRange)) return T(1);
  return T(1) / (T(1) + exp_(-z));
}

// act(z).
template <typename T>
__device__ __forceinline__ T activation(Activation act, T z, T alpha) {
  switch (act) {
    case Activation::kLinear: return z;
    case Activation::kRelu: return z > T(0) ? z : T(0);
    case Activation::kLrelu: return z > T(0) ? z : z * alpha;
    case Activation::kTanh: return tanh_(z);
    case Activation::kSigmoid: return sigmoid_(z);
    case Activation::kElu: return z > T(0) ? z : expm1_(z);
    case Activation::kSelu:
      return T(kSeluScale) * (z > T(0) ? z : T(kSeluAlpha) * expm1_(z));
    case Activation::kSoftplus: return z > T(kExpRange) ? z : log1p_(exp_(z));
    case Activation::kSwish:
      if (z < T(-kExpRange)) return T(0);
      if (z > T(kExpRange)) return z;
      return z * sigmoid_(z);
  }
  return z;
}

// d act / dz at z.
template <typename T>
__device__ __forceinline__ T activation_grad(Activation act, T z, T alpha) {
  switch (act) {
    case Activation::kLinear: return T(1);
    case Activation::kRelu: return z > T(0) ? T(1) : T(0);
    case Activation::kLrelu: return z > T(0) ? T(1) : alpha;
    case Activation::kTanh: {
      const T t = tanh_(z);
      return T(1) - t * t;
    }
    case Activation::kSigmoid: {
      const T s = sigmoid_(z);
      return s * (T(1) - s);
    }
    case Activation::kElu: return z > T(0) ? T(1) : exp_(z);
    case Activation::kSelu: return T(kSeluScale) * (z > T(0) ? T(1) : T(kSeluAlpha) * exp_(z));
    case Activation::kSoftplus: return sigmoid_(z);
    case Activation::kSwish: {
      if (z < T(-kExpRange)) return T(0);
      if (z > T(kExpRange)) return T(1);
      const T s = sigmoid_(z);
      return s * (T(1) + z * (T(1) - s));
    }
  }
  return T(1);
}

// d^2 act / dz^2 at z (zero for the piecewise-linear activations).
template <typename T>
__device__ __forceinline__ T activation_grad2(Activation act, T z, T alpha) {
  switch (act) {
    case Activation::kLinear:
    case Activation::kRelu:
    case Activation::kLrelu: return T(0);
    case Activation::kTanh: {
      const T t = tanh_(z);
      return T(-2) * t * (T(1) - t * t);
    }
    case Activation::kSigmoid: {
      const T s = sigmoid_(z);
      return s * (T(1) - s) * (T(1) - T(2) * s);
    }
    case Activation::kElu: return z > T(0) ? T(0) : exp_(z);
    case Activation::kSelu: return z > T(0) ? T(0) : T(kSeluScale * kSeluAlpha) * exp_(z);
    case Activation::kSoftplus: {
      const T s = sigmoid_(z);
      return s * (T(1) - s);
    }
    case Activation::kSwish: {
      if (z < T(-kExpRange) || z > T(kExpRange)) return T(0);
      const T s = sigmoid_(z);
      return s * (T(1) - s) * (T(2) + z * (T(1) - T(2) * s));
    }
  }
  return T(0);
}

// First derivative from the output y = act(z) * gain (gain > 0): linear/relu/lrelu only.
template <typename T>
__device__ __forceinline__ T activation_grad_from_output(Activation act, T y, T alpha) {
  switch (act) {
    case Activation::kRelu: return y > T(0) ? T(1) : T(0);
    case Activation::kLrelu: return y > T(0) ? T(1) : alpha;
    default: return T(1);
  }
}

template <typename index_t>
__device__ __forceinline__ index_t channel_of(index_t i, const BiasActParams& p) {
  return (i / static_cast<index_t>(p.step)) % static_cast<index_t>(p.channels);
}

// y[i] = clamp(act(x[i] + b[c(i)]) * gain).
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
bias_act_forward_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                        scalar_t* __restrict__ y, const BiasActParams p, const index_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t alpha = static_cast<acc_t>(p.alpha);
  const acc_t gain = static_cast<acc_t>(p.gain);
  const acc_t clamp = static_cast<acc_t>(p.clamp);
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += stride) {
    acc_t z = static_cast<acc_t>(x[i]);
    if (b != nullptr) z += static_cast<acc_t>(b[channel_of(i, p)]);
    acc_t v = activation(p.act, z, alpha) * gain;
    if (clamp >= acc_t(0)) v = v > clamp ? clamp : (v < -clamp ? -clamp : v);  // NaN stays NaN
    y[i] = static_cast<scalar_t>(v);
  }
}

// dx[i] = dy[i] * gain * act^(order)(z[i]), zero where the output was clamped (|y| >= clamp).
// x == nullptr: first derivative from y (linear/relu/lrelu).
template <typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
bias_act_grad_kernel(const scalar_t* __restrict__ dy, const scalar_t* __restrict__ y,
                     const scalar_t* __restrict__ x, const scalar_t* __restrict__ b,
                     scalar_t* __restrict__ dx, const BiasActParams p, const int order,
                     const index_t numel) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t alpha = static_cast<acc_t>(p.alpha);
  const acc_t gain = static_cast<acc_t>(p.gain);
  // The clamp as the forward stored it (rounded to scalar_t: 0.9 is 0.8999 in half), so that
  // every clamped output meets |y| >= clamp.
  const acc_t clamp = static_cast<acc_t>(static_cast<scalar_t>(static_cast<acc_t>(p.clamp)));
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < numel;
       i += stride) {
    const acc_t yv = static_cast<acc_t>(y[i]);
    if (p.clamp >= 0 && abs_(yv) >= clamp) {
      dx[i] = static_cast<scalar_t>(0);
      continue;
    }
    acc_t d;
    if (x != nullptr) {
      acc_t z = static_cast<acc_t>(x[i]);
      if (b != nullptr) z += static_cast<acc_t>(b[channel_of(i, p)]);
      d = order == 1 ? activation_grad(p.act, z, alpha) : activation_grad2(p.act, z, alpha);
    } else {
      d = order == 1 ? activation_grad_from_output(p.act, yv, alpha) : acc_t(0);
    }
    dx[i] = static_cast<scalar_t>(static_cast<acc_t>(dy[i]) * d * gain);
  }
}

unsigned num_blocks(int64_t numel) {
  return static_cast<unsigned>(std::min<int64_t>((numel + kThreads - 1) / kThreads, kMaxBlocks));
}

template <typename scalar_t>
const scalar_t* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<scalar_t>() : nullptr;
}

}  // namespace

void bias_act_forward_launch(const at::Tensor& x, const at::Tensor& b, at::Tensor& y,
                             const BiasActParams& p) {
  const int64_t numel = x.numel();
  if (numel == 0) return;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  const bool small = numel <= std::numeric_limits<int32_t>::max();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "bias_act_cuda", [&] {
        const scalar_t* xp = x.const_data_ptr<scalar_t>();
        const scalar_t* bp = ptr_or_null<scalar_t>(b);
        scalar_t* yp = y.mutable_data_ptr<scalar_t>();
        if (small) {
          bias_act_forward_kernel<scalar_t, uint32_t><<<num_blocks(numel), kThreads, 0, stream>>>(
              xp, bp, yp, p, static_cast<uint32_t>(numel));
        } else {
          bias_act_forward_kernel<scalar_t, uint64_t><<<num_blocks(numel), kThreads, 0, stream>>>(
              xp, bp, yp, p, static_cast<uint64_t>(numel));
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

void bias_act_grad_launch(const at::Tensor& dy, const at::Tensor& y, const at::Tensor& x,
                          const at::Tensor& b, at::Tensor& dx, const BiasActParams& p,
                          int order) {
  const int64_t numel = y.numel();
  if (numel == 0) return;
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(y.get_device()).stream();
  const bool small = numel <= std::numeric_limits<int32_t>::max();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, y.scalar_type(), "bias_act_grad_cuda", [&] {
        const scalar_t* dyp = dy.const_data_ptr<scalar_t>();
        const scalar_t* yp = y.const_data_ptr<scalar_t>();
        const scalar_t* xp = ptr_or_null<scalar_t>(x);
        const scalar_t* bp = ptr_or_null<scalar_t>(b);
        scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
        if (small) {
          bias_act_grad_kernel<scalar_t, uint32_t><<<num_blocks(numel), kThreads, 0, stream>>>(
              dyp, yp, xp, bp, dxp, p, order, static_cast<uint32_t>(numel));
        } else {
          bias_act_grad_kernel<scalar_t, uint64_t><<<num_blocks(numel), kThreads, 0, stream>>>(
              dyp, yp, xp, bp, dxp, p, order, static_cast<uint64_t>(numel));
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

bool probe_kernel_image(int* binary_version, std::string* error) {
  cudaFuncAttributes attributes;
  const cudaError_t status =
      cudaFuncGetAttributes(&attributes, bias_act_forward_kernel<float, uint32_t>);
  if (status != cudaSuccess) {
    *error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    (void)cudaGetLastError();  // clear the (non-sticky) error for the next CUDA call
    return false;
  }
  *binary_version = attributes.binaryVersion;
  return true;
}

int compiled_cuda_version() { return CUDART_VERSION; }

}  // namespace sg2
