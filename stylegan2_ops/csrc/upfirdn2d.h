// upfirdn2d: zero-insert upsample, pad/crop, FIR filter (true convolution unless flip), keep
// every down-th sample. Declarations shared by the op (upfirdn2d.cpp) and kernels (.cu).
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

namespace sg2 {

struct Upfirdn2dGeometry {
  int batch, channels;        // N, C
  int in_h, in_w;             // input H, W
  int out_h, out_w;           // output H, W
  int up_x, up_y;             // zero-insertion factors
  int down_x, down_y;         // decimation factors
  int pad_x0, pad_y0;         // leading padding (negative crops); trailing is implied by out_*
  int f_h, f_w;               // filter taps
  bool flip;                  // true: correlation with f; false: convolution
  double gain;                // applied to the filtered sum (in the accumulation type)
  int64_t sx_n, sx_c, sx_h, sx_w;  // input strides in elements (any layout)
  bool out_channels_last;     // output is [N, H, W, C] in memory
};

// x: [N, C, H, W] CUDA tensor; f: float32 [f_h, f_w] contiguous on the same device;
// y: preallocated [N, C, out_h, out_w] in the layout named by g.out_channels_last.
void upfirdn2d_launch(const at::Tensor& x, const at::Tensor& f, at::Tensor& y,
                      const Upfirdn2dGeometry& g);

}  // namespace sg2
