// The stylegan2_ops::bias_act and ::bias_act_grad operators on CUDA: checks, layouts, launch.
// The schema, the fake (meta) implementations and autograd live in stylegan2_ops/_kernels.py.

#include <string>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "bias_act.h"
#include "common.h"

namespace sg2 {
namespace {

Activation parse_activation(c10::string_view name) {
  if (name == "linear") return Activation::kLinear;
  if (name == "relu") return Activation::kRelu;
  if (name == "lrelu") return Activation::kLrelu;
  if (name == "tanh") return Activation::kTanh;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "elu") return Activation::kElu;
  if (name == "selu") return Activation::kSelu;
  if (name == "softplus") return Activation::kSoftplus;
  if (name == "swish") return Activation::kSwish;
  TORCH_CHECK(false, "bias_act: unknown activation '", std::string(name), "'");
  return Activation::kLinear;  // not reached
}

BiasActParams make_params(const at::Tensor& ref, int64_t dim, c10::string_view act,
                          double alpha, double gain, std::optional<double> clamp) {
  TORCH_CHECK(ref.dim() >= 1 && dim >= 0 && dim < ref.dim(), "bias_act: dim=", dim,
              " is out of range for a ", ref.dim(), "-D tensor");
  TORCH_CHECK(!clamp.has_value() || *clamp >= 0, "bias_act: clamp must be >= 0");
  BiasActParams p;
  p.act = parse_activation(act);
  p.alpha = alpha;
  p.gain = gain;
  p.clamp = clamp.has_value() ? *clamp : -1.0;
  p.channels = ref.size(dim);
  // A size-1 dimension may carry any stride; its channel index is always 0.
  p.step = p.channels > 1 ? ref.stride(dim) : 1;
  return p;
}

at::Tensor bias_or_undefined(const std::optional<at::Tensor>& b, const at::Tensor& ref,
                             int64_t dim) {
  if (!b.has_value() || !b->defined()) return at::Tensor();
  check_cuda(*b, "b");
  TORCH_CHECK(b->dim() == 1 && b->size(0) == ref.size(dim), "bias_act: b must be 1-D with ",
              ref.size(dim), " entries, got ", b->sizes());
  TORCH_CHECK(b->scalar_type() == ref.scalar_type(), "bias_act: b is ", b->scalar_type(),
              " but x is ", ref.scalar_type());
  return b->contiguous();
}

// Same values in `ref`'s memory layout, so that one flat index addresses both.
at::Tensor like(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  check_cuda(t, name);
  TORCH_CHECK(t.sizes() == ref.sizes() && t.scalar_type() == ref.scalar_type(), "bias_act: ",
              name, " is ", t.scalar_type(), " ", t.sizes(), ", expected ", ref.scalar_type(),
              " ", ref.sizes());
  if (t.strides() == ref.strides()) return t;
  return at::empty_like(ref).copy_(t);
}

at::Tensor dense(const at::Tensor& t) {
  return t.is_non_overlapping_and_dense() ? t : t.contiguous();
}

at::Tensor bias_act_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& b_in,
                         int64_t dim, c10::string_view act, double alpha, double gain,
                         std::optional<double> clamp) {
  check_cuda(x_in, "x");
  const at::Tensor x = dense(x_in);
  const BiasActParams p = make_params(x, dim, act, alpha, gain, clamp);
  const at::Tensor b = bias_or_undefined(b_in, x, dim);
  at::Tensor y = at::empty_like(x);  // same strides as the dense x
  const c10::cuda::CUDAGuard guard(x.device());
  bias_act_forward_launch(x, b, y, p);
  return y;
}

at::Tensor bias_act_grad_cuda(const at::Tensor& dy_in, const at::Tensor& y_in,
                              const std::optional<at::Tensor>& x_in,
                              const std::optional<at::Tensor>& b_in, int64_t dim,
                              c10::string_view act, double alpha, double gain,
                              std::optional<double> clamp, int64_t order) {
  check_cuda(y_in, "y");
  TORCH_CHECK(order == 1 || order == 2, "bias_act_grad: order must be 1 or 2, got ", order);
  const at::Tensor y = dense(y_in);
  const BiasActParams p = make_params(y, dim, act, alpha, gain, clamp);
  const at::Tensor dy = like(dy_in, y, "dy");
  at::Tensor x;
  at::Tensor b;
  if (x_in.has_value() && x_in->defined()) {
    x = like(*x_in, y, "x");
    b = bias_or_undefined(b_in, y, dim);
  } else {
    TORCH_CHECK(p.act == Activation::kLinear || p.act == Activation::kRelu ||
                    p.act == Activation::kLrelu,
                "bias_act_grad: activation '", std::string(act), "' needs the input x");
  }
  at::Tensor dx = at::empty_like(y);
  const c10::cuda::CUDAGuard guard(y.device());
  bias_act_grad_launch(dy, y, x, b, dx, p, static_cast<int>(order));
  return dx;
}

}  // namespace
}  // namespace sg2

TORCH_LIBRARY_IMPL(stylegan2_ops, CUDA, m) {
  m.impl("bias_act", &sg2::bias_act_cuda);
  m.impl("bias_act_grad", &sg2::bias_act_grad_cuda);
}
