// bias_act: y = clamp(act(x + b) * gain, -clamp, clamp) and its derivatives, elementwise on a
// dense tensor whose bias runs along one dimension. Shared by bias_act.cpp and the kernels.
#pragma once

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

namespace sg2 {

enum class Activation : int {
  kLinear = 0,
  kRelu,
  kLrelu,
  kTanh,
  kSigmoid,
  kElu,
  kSelu,
  kSoftplus,
  kSwish,
};

struct BiasActParams {
  Activation act;
  double alpha;       // lrelu slope for negative inputs
  double gain;        // multiplies the activation
  double clamp;       // < 0: no clamp
  int64_t channels;   // x.size(dim): length of the bias
  int64_t step;       // x.stride(dim): distance in memory between consecutive channels
};

// y = clamp(act(x + b) * gain). x, y dense with identical strides; b contiguous or undefined.
void bias_act_forward_launch(const at::Tensor& x, const at::Tensor& b, at::Tensor& y,
                             const BiasActParams& p);

// dx = dy * gain * act^(order)(x + b), zero where |y| >= clamp. Without x (undefined) the
// first derivative comes from y, valid for linear/relu/lrelu with gain > 0 and alpha >= 0.
void bias_act_grad_launch(const at::Tensor& dy, const at::Tensor& y, const at::Tensor& x,
                          const at::Tensor& b, at::Tensor& dx, const BiasActParams& p,
                          int order);

// Runs cudaFuncGetAttributes on a kernel for the current device: false (with the CUDA error)
// when the extension holds no code this GPU can run.
bool probe_kernel_image(int* binary_version, std::string* error);

// CUDA runtime version the kernels were compiled against (e.g. 13000).
int compiled_cuda_version();

}  // namespace sg2
