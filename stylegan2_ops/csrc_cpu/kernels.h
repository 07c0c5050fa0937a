// The CPU kernels of stylegan2_ops._cpu (bound to Python in module.cpp).
#pragma once

#include <torch/extension.h>

// y = conv2d(x * styles, w, padding=1) * dcoefs + noise, channels_last, from the transformed
// filter u = [36, C, K] (winograd.cpp); form -1 chooses how (0: whole tensor, > 0: blocks of
// that many tiles); per_image: no image's bits depend on the others in its batch.
torch::Tensor conv3x3(const torch::Tensor& x, const torch::Tensor& u,
                      const c10::optional<torch::Tensor>& styles,
                      const c10::optional<torch::Tensor>& dcoefs,
                      const c10::optional<torch::Tensor>& noise, int64_t form,
                      bool per_image);
// dL/du for y = conv3x3(x, u) given dy = dL/dy: [36, C, K], summed over the batch; both
// activations channels_last (winograd.cpp). tiles_per_chunk -1 chooses the scratch's size.
torch::Tensor conv3x3_weight_grad(const torch::Tensor& x, const torch::Tensor& dy,
                                  int64_t tiles_per_chunk);
// Whether conv3x3's blocked form can run: torch's library exports the BLAS calls it needs.
bool winograd_blocked_available();

// out = clamp(act(x + b) * gain, -clamp, clamp), b along dimension `dim`, act linear or leaky
// ReLU; out may be x itself (bias_act.cpp).
torch::Tensor bias_act(const torch::Tensor& x, const c10::optional<torch::Tensor>& b, int64_t dim,
                       bool lrelu, double alpha, double gain, c10::optional<double> clamp,
                       const torch::Tensor& out);
