// The stylegan2_ops::upfirdn2d operator on CUDA: argument checks, output allocation, launch.
// The schema, the fake (meta) implementation and autograd live in stylegan2_ops/_kernels.py.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "common.h"
#include "upfirdn2d.h"

namespace sg2 {
namespace {

// x: [N, C, H, W]; f: float32 [fh, fw]; up/down: [x, y]; padding: [x0, x1, y0, y1].
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, at::IntArrayRef up,
                          at::IntArrayRef down, at::IntArrayRef padding, bool flip_filter,
                          double gain) {
  check_cuda(x, "x");
  check_cuda(f, "f");
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(f.dim() == 2 && f.scalar_type() == at::ScalarType::Float,
              "upfirdn2d: f must be a float32 [fh, fw] filter, got ", f.scalar_type(), " ",
              f.sizes());
  TORCH_CHECK(f.get_device() == x.get_device(), "upfirdn2d: f and x are on different devices");
  TORCH_CHECK(up.size() == 2 && down.size() == 2 && padding.size() == 4,
              "upfirdn2d: expected up [x, y], down [x, y], padding [x0, x1, y0, y1]");
  TORCH_CHECK(up[0] >= 1 && up[1] >= 1 && down[0] >= 1 && down[1] >= 1,
              "upfirdn2d: up and down must be >= 1, got ", up, " and ", down);
  TORCH_CHECK(f.numel() > 0, "upfirdn2d: empty filter");
  check_int32_indexable(x, "x");

  Upfirdn2dGeometry g;
  g.batch = static_cast<int>(x.size(0));
  g.channels = static_cast<int>(x.size(1));
  g.in_h = static_cast<int>(x.size(2));
  g.in_w = static_cast<int>(x.size(3));
  g.up_x = static_cast<int>(up[0]);
  g.up_y = static_cast<int>(up[1]);
  g.down_x = static_cast<int>(down[0]);
  g.down_y = static_cast<int>(down[1]);
  g.pad_x0 = static_cast<int>(padding[0]);
  g.pad_y0 = static_cast<int>(padding[2]);
  g.f_h = static_cast<int>(f.size(0));
  g.f_w = static_cast<int>(f.size(1));
  g.flip = flip_filter;
  g.gain = gain;
  // Output size: (in * up + pad0 + pad1 - taps + down) // down, rounding towards -inf.
  g.out_w = floor_div(g.in_w * g.up_x + g.pad_x0 + static_cast<int>(padding[1]) - g.f_w + g.down_x,
                      g.down_x);
  g.out_h = floor_div(g.in_h * g.up_y + g.pad_y0 + static_cast<int>(padding[3]) - g.f_h + g.down_y,
                      g.down_y);
  TORCH_CHECK(g.out_w >= 1 && g.out_h >= 1, "upfirdn2d: output would be empty (", g.out_h, "x",
              g.out_w, ")");
  g.sx_n = x.stride(0);
  g.sx_c = x.stride(1);
  g.sx_h = x.stride(2);
  g.sx_w = x.stride(3);
  // The output keeps channels_last when the input is (only) channels_last; the fake
  // implementation in _kernels.py applies the same rule.
  g.out_channels_last =
      x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();

  const at::Tensor filter = f.contiguous();
  at::Tensor y = at::empty(
      {x.size(0), x.size(1), g.out_h, g.out_w},
      x.options().memory_format(g.out_channels_last ? at::MemoryFormat::ChannelsLast
                                                    : at::MemoryFormat::Contiguous));
  check_int32_indexable(y, "the output");
  const c10::cuda::CUDAGuard guard(x.device());
  upfirdn2d_launch(x, filter, y, g);
  return y;
}

}  // namespace
}  // namespace sg2

TORCH_LIBRARY_IMPL(stylegan2_ops, CUDA, m) {
  m.impl("upfirdn2d", &sg2::upfirdn2d_cuda);
}
