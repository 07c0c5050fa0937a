// Bias, activation, gain and clamp in one pass over memory on a CPU (PyTorch's path makes
// three or four: add, activation, multiply, clamp). Each element takes PyTorch's operations in
// PyTorch's order and skips those PyTorch skips, so the values equal its path's: (x + b), then
// x > 0 ? x : x * alpha, then x * gain unless the gain is 1, then min(max(x, -clamp), clamp)
// when clamped (NaN stays NaN; which NaN's payload survives x + b when both are NaN is the
// compiler's choice of operand order).
//
// Layouts: x is [outer, C, inner] contiguous (C at `dim`), or a channels_last 4-D tensor with
// dim 1, which is [N*H*W, C] with inner 1.
#include "isa.h"
#include "kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace {

struct Activation {
  float alpha, gain, low, high;
  bool scaled, clamped;
};

// One element; the parameters come as values held in registers (read through a reference the
// compiler would have to assume every store into the output may change them, and would
// neither split the loop on the flags nor vectorise it).
template <bool kBias, bool kLrelu, bool kScaled, bool kClamped>
SG2_INLINE float apply(float v, float bias, float alpha, float gain, float low, float high) {
  if (kBias) v = v + bias;
  if (kLrelu) v = v > 0.f ? v : v * alpha;  // (vectorised: see -fno-trapping-math in _build.py)
  if (kScaled) v = v * gain;
  if (kClamped) v = std::min(std::max(v, low), high);
  return v;
}

// Runs of `inner` elements that share one channel's bias (contiguous NCHW, inner = H * W), or
// rows of `channels` elements with one bias each (channels_last, or [N, C]) when inner is 1.
template <bool kBias, bool kLrelu, bool kScaled, bool kClamped>
SG2_INLINE void activate_range(const float* x, float* y, const float* b, int64_t first,
                               int64_t last, int64_t channels, int64_t inner, Activation a) {
  const float alpha = a.alpha, gain = a.gain, low = a.low, high = a.high;
  if (inner == 1) {
    for (int64_t r = first; r < last; ++r) {
      const float* in = x + r * channels;
      float* out = y + r * channels;
#pragma GCC ivdep
      for (int64_t c = 0; c < channels; ++c) {
        out[c] = apply<kBias, kLrelu, kScaled, kClamped>(in[c], kBias ? b[c] : 0.f, alpha, gain,
                                                         low, high);
      }
    }
    return;
  }
  for (int64_t r = first; r < last; ++r) {
    const float bias = kBias ? b[r % channels] : 0.f;
    const float* in = x + r * inner;
    float* out = y + r * inner;
#pragma GCC ivdep
    for (int64_t i = 0; i < inner; ++i) {
      out[i] = apply<kBias, kLrelu, kScaled, kClamped>(in[i], bias, alpha, gain, low, high);
    }
  }
}

// The flags become template arguments, so each combination is a loop of its own.
template <bool kBias, bool kLrelu>
SG2_INLINE void activate_flags(const float* x, float* y, const float* b, int64_t first,
                               int64_t last, int64_t channels, int64_t inner, const Activation& a) {
  if (a.scaled) {
    a.clamped ? activate_range<kBias, kLrelu, true, true>(x, y, b, first, last, channels, inner, a)
              : activate_range<kBias, kLrelu, true, false>(x, y, b, first, last, channels, inner, a);
  } else {
    a.clamped ? activate_range<kBias, kLrelu, false, true>(x, y, b, first, last, channels, inner, a)
              : activate_range<kBias, kLrelu, false, false>(x, y, b, first, last, channels, inner, a);
  }
}

SG2_INLINE void activate_body(const float* x, float* y, const float* b, int64_t first,
                              int64_t last, int64_t channels, int64_t inner, bool lrelu,
                              const Activation& a) {
  if (b != nullptr) {
    lrelu ? activate_flags<true, true>(x, y, b, first, last, channels, inner, a)
          : activate_flags<true, false>(x, y, b, first, last, channels, inner, a);
  } else {
    lrelu ? activate_flags<false, true>(x, y, b, first, last, channels, inner, a)
          : activate_flags<false, false>(x, y, b, first, last, channels, inner, a);
  }
}

SG2_DISPATCH(activate, activate_body,
             (const float* x, float* y, const float* b, int64_t first, int64_t last,
              int64_t channels, int64_t inner, bool lrelu, const Activation& a),
             (x, y, b, first, last, channels, inner, lrelu, a))

constexpr int64_t kGrainElements = 1 << 15;  // below this a thread's share is not worth it

}  // namespace

torch::Tensor bias_act(const torch::Tensor& x, const c10::optional<torch::Tensor>& b, int64_t dim,
                       bool lrelu, double alpha, double gain, c10::optional<double> clamp,
                       const torch::Tensor& out) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == torch::kFloat32,
              "x must be a float32 CPU tensor");
  TORCH_CHECK(x.dim() >= 1 && dim >= 0 && dim < x.dim(), "dim is out of range");
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == torch::kFloat32 &&
                  out.sizes() == x.sizes() && out.strides() == x.strides(),
              "out must be a float32 CPU tensor of x's shape and strides");
  const int64_t channels = x.size(dim);
  int64_t outer, inner;
  if (x.is_contiguous()) {
    inner = 1;
    for (int64_t d = dim + 1; d < x.dim(); ++d) inner *= x.size(d);
    outer = x.numel() / std::max<int64_t>(1, channels * inner);
  } else {
    TORCH_CHECK(x.dim() == 4 && dim == 1 && x.is_contiguous(at::MemoryFormat::ChannelsLast),
                "x must be contiguous, or channels_last with the channels at dim 1");
    inner = 1;
    outer = x.size(0) * x.size(2) * x.size(3);
  }
  const float* bp = nullptr;
  if (b.has_value()) {
    TORCH_CHECK(b->device().is_cpu() && b->scalar_type() == torch::kFloat32 && b->dim() == 1 &&
                    b->size(0) == channels && b->is_contiguous(),
                "b must be a contiguous float32 CPU tensor of x.size(dim) entries");
    bp = b->data_ptr<float>();
  }
  const Activation a{static_cast<float>(alpha), static_cast<float>(gain),
                     clamp ? -static_cast<float>(*clamp) : 0.f,
                     clamp ? static_cast<float>(*clamp) : 0.f, gain != 1.0, clamp.has_value()};
  const float* xp = x.data_ptr<float>();
  float* yp = out.data_ptr<float>();
  // Work items: runs sharing a bias (planes) or rows of channels; outer * C of them for
  // planes, outer for rows.
  const int64_t items = inner == 1 ? outer : outer * channels;
  const int64_t item_size = inner == 1 ? channels : inner;
  at::parallel_for(0, items, std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, item_size)),
                   [&](int64_t first, int64_t last) {
                     activate(xp, yp, bp, first, last, channels, inner, lrelu, a);
                   });
  return out;
}
