// 3x3 convolutions (stride 1, padding 1) on a CPU by Winograd's minimal filtering F(4x4, 3x3):
// each 4x4 output tile costs 36 multiplications per channel pair instead of 144. The two
// transforms run here; the 36 channel-mixing products in between are the BLAS's, either over
// all tiles at once (whole form) or block by block of one image's tiles, each block staying in
// its thread's cache (blocked form). Activations are channels_last so that every inner loop
// runs along contiguous channels.
//
// Tile layout: P tiles of 4x4 output pixels (n, tile row, tile column); the transformed input V
// and the product M are [36, P, channels] (or [36, tiles of the block, channels]), point
// xi = 6 * row + column of the 6x6 tile.
//
// The modulated conv's per-sample scales ride along for free: the input transform multiplies by
// the styles (per sample and input channel), the output transform by the demodulation
// coefficients (per sample and output channel) and adds the per-pixel noise.
//
// Training also takes the filter's gradient this way (conv3x3_weight_grad, at the end): the
// adjoint of y = A^T [U (.) V] A gives dL/dU as 36 products of V with A dY A^T, summed over
// the tiles.
#include "isa.h"
#include "kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace {

constexpr int kChannelBlock = 64;  // channels held in a tile's scratch (36 x 64 floats: L1)

// B^T applied along one line of the 6x6 input tile, channel vectors s[0..5] -> o[0..5]. (The
// channel loop carries no dependence: ivdep lets it vectorize despite the 12 pointers.)
SG2_INLINE void input_line(const float* const s[6], float* const o[6], int count) {
#pragma GCC ivdep
  for (int c = 0; c < count; ++c) {
    const float d0 = s[0][c], d1 = s[1][c], d2 = s[2][c], d3 = s[3][c], d4 = s[4][c];
    const float d5 = s[5][c];
    const float even_a = d4 - 4.f * d2, odd_a = d3 - 4.f * d1;
    const float even_b = d4 - d2, odd_b = 2.f * (d3 - d1);
    o[0][c] = 4.f * d0 - 5.f * d2 + d4;
    o[1][c] = even_a + odd_a;
    o[2][c] = even_a - odd_a;
    o[3][c] = even_b + odd_b;
    o[4][c] = even_b - odd_b;
    o[5][c] = 4.f * d1 - 5.f * d3 + d5;
  }
}

// A^T applied along one line of the 6x6 product tile, channel vectors m[0..5] -> o[0..3].
SG2_INLINE void output_line(const float* const m[6], float* const o[4], int count) {
#pragma GCC ivdep
  for (int c = 0; c < count; ++c) {
    const float m0 = m[0][c], m1 = m[1][c], m2 = m[2][c], m3 = m[3][c], m4 = m[4][c];
    const float m5 = m[5][c];
    const float sum12 = m1 + m2, diff12 = m1 - m2, sum34 = m3 + m4, diff34 = m3 - m4;
    o[0][c] = m0 + sum12 + sum34;
    o[1][c] = diff12 + 2.f * diff34;
    o[2][c] = sum12 + 4.f * sum34;
    o[3][c] = diff12 + 8.f * diff34 + m5;
  }
}

// A applied along one line of a 4x4 output-gradient tile, channel vectors d[0..3] -> o[0..5]:
// the adjoint of output_line, which takes the gradient of y back onto the product's 36 points.
SG2_INLINE void gradient_line(const float* const d[4], float* const o[6], int count) {
#pragma GCC ivdep
  for (int c = 0; c < count; ++c) {
    const float d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c];
    const float sum02 = d0 + d2;
    o[0][c] = d0;
    o[1][c] = sum02 + d1 + d3;
    o[2][c] = sum02 - d1 - d3;
    o[3][c] = d0 + 4.f * d2 + 2.f * d1 + 8.f * d3;
    o[4][c] = d0 + 4.f * d2 - 2.f * d1 - 8.f * d3;
    o[5][c] = d3;
  }
}

struct Geometry {
  int64_t height, width, tile_rows, tile_cols, tiles;
  void locate(int64_t p, int64_t* n, int64_t* row, int64_t* col) const {
    *n = p / (tile_rows * tile_cols);
    *row = (p / tile_cols) % tile_rows;
    *col = p % tile_cols;
  }
};

SG2_INLINE void input_tiles_body(const float* x, const float* styles, float* v, int64_t first,
                                 int64_t last, const Geometry& g, int64_t channels, int64_t base,
                                 int64_t stride) {
  alignas(64) float zeros[kChannelBlock] = {0};
  alignas(64) float scaled[6][kChannelBlock];
  alignas(64) float half[6][6][kChannelBlock];
  for (int64_t p = first; p < last; ++p) {
    int64_t n, row, col;
    g.locate(p, &n, &row, &col);
    const int64_t top = row * 4 - 1, left = col * 4 - 1;
    for (int64_t c0 = 0; c0 < channels; c0 += kChannelBlock) {
      const int count = static_cast<int>(std::min<int64_t>(kChannelBlock, channels - c0));
      const float* style = styles ? styles + n * channels + c0 : nullptr;
      for (int i = 0; i < 6; ++i) {  // along each input row of the tile
        const int64_t h = top + i;
        const float* s[6];
        for (int j = 0; j < 6; ++j) {
          const int64_t w = left + j;
          const bool inside = h >= 0 && h < g.height && w >= 0 && w < g.width;
          s[j] = inside ? x + ((n * g.height + h) * g.width + w) * channels + c0 : zeros;
          if (inside && style) {
            for (int c = 0; c < count; ++c) scaled[j][c] = s[j][c] * style[c];
            s[j] = scaled[j];
          }
        }
        float* o[6] = {half[i][0], half[i][1], half[i][2], half[i][3], half[i][4], half[i][5]};
        input_line(s, o, count);
      }
      for (int j = 0; j < 6; ++j) {  // then down each column
        const float* s[6] = {half[0][j], half[1][j], half[2][j], half[3][j], half[4][j],
                             half[5][j]};
        float* o[6];
        for (int i = 0; i < 6; ++i) o[i] = v + ((i * 6 + j) * stride + p - base) * channels + c0;
        input_line(s, o, count);
      }
    }
  }
}

SG2_INLINE void output_tiles_body(const float* m, const float* dcoefs, const float* noise,
                                  int64_t noise_batch, float* y, int64_t first, int64_t last,
                                  const Geometry& g, int64_t channels, int64_t base,
                                  int64_t stride) {
  alignas(64) float half[4][6][kChannelBlock];
  alignas(64) float pixels[4][kChannelBlock];
  for (int64_t p = first; p < last; ++p) {
    int64_t n, row, col;
    g.locate(p, &n, &row, &col);
    const float* noise_plane = noise ? noise + (noise_batch > 1 ? n : 0) * g.height * g.width
                                     : nullptr;
    for (int64_t k0 = 0; k0 < channels; k0 += kChannelBlock) {
      const int count = static_cast<int>(std::min<int64_t>(kChannelBlock, channels - k0));
      const float* dcoef = dcoefs ? dcoefs + n * channels + k0 : nullptr;
      for (int j = 0; j < 6; ++j) {  // down each column of the 6x6 product
        const float* s[6];
        for (int i = 0; i < 6; ++i) s[i] = m + ((i * 6 + j) * stride + p - base) * channels + k0;
        float* o[4] = {half[0][j], half[1][j], half[2][j], half[3][j]};
        output_line(s, o, count);
      }
      for (int i = 0; i < 4; ++i) {  // then along each output row
        const int64_t h = row * 4 + i;
        if (h >= g.height) break;
        const float* s[6] = {half[i][0], half[i][1], half[i][2], half[i][3], half[i][4],
                             half[i][5]};
        float* o[4] = {pixels[0], pixels[1], pixels[2], pixels[3]};
        output_line(s, o, count);
        for (int j = 0; j < 4; ++j) {
          const int64_t w = col * 4 + j;
          if (w >= g.width) break;
          float* out = y + ((n * g.height + h) * g.width + w) * channels + k0;
          const float add = noise_plane ? noise_plane[h * g.width + w] : 0.f;
          if (dcoef) {
            for (int c = 0; c < count; ++c) out[c] = pixels[j][c] * dcoef[c] + add;
          } else {
            for (int c = 0; c < count; ++c) out[c] = pixels[j][c] + add;
          }
        }
      }
    }
  }
}

// The gradient of y over tiles [first, last) onto the 36 points: A dY A^T per tile, pixels
// past the image's edge counting as zero. dy [N, H, W, channels]; d [36, stride, channels].
SG2_INLINE void gradient_tiles_body(const float* dy, float* d, int64_t first, int64_t last,
                                    const Geometry& g, int64_t channels, int64_t base,
                                    int64_t stride) {
  alignas(64) float zeros[kChannelBlock] = {0};
  alignas(64) float half[4][6][kChannelBlock];
  for (int64_t p = first; p < last; ++p) {
    int64_t n, row, col;
    g.locate(p, &n, &row, &col);
    for (int64_t k0 = 0; k0 < channels; k0 += kChannelBlock) {
      const int count = static_cast<int>(std::min<int64_t>(kChannelBlock, channels - k0));
      for (int i = 0; i < 4; ++i) {  // along each gradient row of the tile
        const int64_t h = row * 4 + i;
        const float* s[4];
        for (int j = 0; j < 4; ++j) {
          const int64_t w = col * 4 + j;
          const bool inside = h < g.height && w < g.width;
          s[j] = inside ? dy + ((n * g.height + h) * g.width + w) * channels + k0 : zeros;
        }
        float* o[6] = {half[i][0], half[i][1], half[i][2], half[i][3], half[i][4], half[i][5]};
        gradient_line(s, o, count);
      }
      for (int j = 0; j < 6; ++j) {  // then down each column
        const float* s[4] = {half[0][j], half[1][j], half[2][j], half[3][j]};
        float* o[6];
        for (int i = 0; i < 6; ++i) o[i] = d + ((i * 6 + j) * stride + p - base) * channels + k0;
        gradient_line(s, o, count);
      }
    }
  }
}

SG2_DISPATCH(input_tiles, input_tiles_body,
             (const float* x, const float* styles, float* v, int64_t first, int64_t last,
              const Geometry& g, int64_t channels, int64_t base, int64_t stride),
             (x, styles, v, first, last, g, channels, base, stride))

SG2_DISPATCH(output_tiles, output_tiles_body,
             (const float* m, const float* dcoefs, const float* noise, int64_t noise_batch,
              float* y, int64_t first, int64_t last, const Geometry& g, int64_t channels,
              int64_t base, int64_t stride),
             (m, dcoefs, noise, noise_batch, y, first, last, g, channels, base, stride))

SG2_DISPATCH(gradient_tiles, gradient_tiles_body,
             (const float* dy, float* d, int64_t first, int64_t last, const Geometry& g,
              int64_t channels, int64_t base, int64_t stride),
             (dy, d, first, last, g, channels, base, stride))

Geometry geometry_of(int64_t batch, int64_t height, int64_t width) {
  const int64_t rows = (height + 3) / 4, cols = (width + 3) / 4;
  return Geometry{height, width, rows, cols, batch * rows * cols};
}

const float* optional_data(const c10::optional<torch::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

void check_float_cpu(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32, name,
              " must be a float32 CPU tensor");
}

// The BLAS's single-precision product (column-major) and MKL's per-thread thread count, as
// torch's CPU library exports them (MKL inside torch's x86-64 wheels). Weak: a torch built
// without them still loads this extension, and the blocked form is then off.
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                       const int* k, const float* alpha, const float* a, const int* lda,
                       const float* b, const int* ldb, const float* beta, float* c,
                       const int* ldc) __attribute__((weak));
// (MKL_Set_Num_Threads_Local takes its argument by value: the lower-case name is the Fortran one.)
extern "C" int MKL_Set_Num_Threads_Local(int threads) __attribute__((weak));


// MKL on one thread for this scope. torch sets MKL's thread count for its own thread only
// (thread-local), so without this a block's product would run threaded on the thread that
// called torch and single-threaded on the others, and round differently by which took it.
class SequentialBlas {
 public:
  SequentialBlas() : previous_(MKL_Set_Num_Threads_Local(1)) {}
  ~SequentialBlas() { MKL_Set_Num_Threads_Local(previous_); }
  SequentialBlas(const SequentialBlas&) = delete;
  SequentialBlas& operator=(const SequentialBlas&) = delete;

 private:
  int previous_;
};

// What one call computes, past the argument checks.
struct Call {
  const float *x, *u, *styles, *dcoefs, *noise;
  float* y;
  int64_t noise_batch, channels, out_channels;
  Geometry g;
};

// Whole form: each transform in one pass over the tiles, the 36 products as one bmm (which
// spreads each product over the threads). Best where an image has few tiles and
// the transformed filter is large (512 channels at 8-32 px). Run image by image (one bmm per
// image, the same buffers each time) where a sample's bytes must not depend on its batch: the
// BLAS picks its kernels by the product's row count, and on some CPUs (MKL's AVX2 code) rows
// then round differently in a batch than alone. Run over the whole batch at once in training,
// where the filter is then read once.
void conv3x3_whole(const Call& c, const torch::TensorOptions& options, bool per_image) {
  const int64_t per_call = per_image ? c.g.tile_rows * c.g.tile_cols : c.g.tiles;
  auto v = torch::empty({36, per_call, c.channels}, options);
  auto m = torch::empty({36, per_call, c.out_channels}, options);
  auto u = torch::from_blob(const_cast<float*>(c.u), {36, c.channels, c.out_channels}, options);
  float* vp = v.data_ptr<float>();
  const float* mp = m.data_ptr<float>();
  for (int64_t base = 0; base < c.g.tiles; base += per_call) {
    at::parallel_for(base, base + per_call, 4, [&](int64_t first, int64_t last) {
      input_tiles(c.x, c.styles, vp, first, last, c.g, c.channels, base, per_call);
    });
    at::bmm_out(m, v, u);
    at::parallel_for(base, base + per_call, 4, [&](int64_t first, int64_t last) {
      output_tiles(mp, c.dcoefs, c.noise, c.noise_batch, c.y, first, last, c.g, c.out_channels,
                   base, per_call);
    });
  }
}

// Blocked form: each thread takes a block of one image's tiles through input transform, the 36
// products and output transform while its scratch is in its own cache. The whole-tensor form
// writes and reads back 36 values per tile and channel through memory twice, which at 64-128
// channels costs more than the products (64 channels at 256 px: 42 ms whole, 11 ms blocked).
// Each block's products are one single-threaded sgemm per point over the same rows wherever
// the image sits in the batch and however many threads run: an image's bits depend on neither.
void conv3x3_blocked(const Call& c, const torch::TensorOptions& options, int64_t block) {
  const int64_t per_image = c.g.tile_rows * c.g.tile_cols;
  // Tiles spread evenly over an image's blocks: no short last block (the products then see
  // the same row counts, image after image).
  const int64_t blocks_per_image = (per_image + block - 1) / block;
  const int64_t largest = (per_image + blocks_per_image - 1) / blocks_per_image;
  const int64_t batch = c.g.tiles / per_image;
  at::parallel_for(0, batch * blocks_per_image, 1, [&](int64_t b0, int64_t b1) {
    const SequentialBlas sequential;
    auto v = torch::empty({36 * largest * c.channels}, options);
    auto m = torch::empty({36 * largest * c.out_channels}, options);
    float* vp = v.data_ptr<float>();
    float* mp = m.data_ptr<float>();
    const float one = 1.f, zero = 0.f;
    const int in = static_cast<int>(c.channels), out = static_cast<int>(c.out_channels);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n = b / blocks_per_image, i = b % blocks_per_image;
      const int64_t first = n * per_image + i * per_image / blocks_per_image;
      const int64_t last = n * per_image + (i + 1) * per_image / blocks_per_image;
      input_tiles(c.x, c.styles, vp, first, last, c.g, c.channels, first, largest);
      // Row-major [tiles, in] x [in, out] = column-major [out, in] x [in, tiles].
      const int tiles = static_cast<int>(last - first);
      for (int xi = 0; xi < 36; ++xi) {
        sgemm_("N", "N", &out, &tiles, &in, &one, c.u + xi * c.channels * c.out_channels, &out,
               vp + xi * largest * c.channels, &in, &zero, mp + xi * largest * c.out_channels,
               &out);
      }
      output_tiles(mp, c.dcoefs, c.noise, c.noise_batch, c.y, first, last, c.g, c.out_channels,
                   first, largest);
    }
  });
}

// Tiles per block: the scratch (36 values per tile and channel, in and out) stays within a
// core's L2 at 64 channels; beyond, 64 tiles amortise reading the transformed filter once per
// block (measured per shape, docs/benchmarks.md).
int64_t tiles_per_block(int64_t channels, int64_t out_channels) {
  return channels + out_channels <= 128 ? 32 : 64;
}

// Blocked for images of at least 256 tiles (64 x 64 px and up: four blocks or more, so that one
// image keeps two threads busy), else whole (512 channels at 8-32 px, where a block would
// re-read the 38 MB filter for a few tiles). Decided by the image alone, never by the batch or
// the threads: the two forms' products may round differently (MKL picks kernels by the
// product's shape and the CPU), and a sample's bytes must not depend on its batch.
constexpr int64_t kMinBlockedTiles = 256;

bool blocked_suits(const Geometry& g) {
  return g.tile_rows * g.tile_cols >= kMinBlockedTiles && winograd_blocked_available();
}

}  // namespace

// Input transform, 36 products (the BLAS), output transform; `form`: -1 chooses, 0 whole,
// > 0 blocked with that many tiles per block (for the tests and the benchmark); `per_image`:
// every image's products its own (the whole form then runs image by image).
torch::Tensor conv3x3(const torch::Tensor& x, const torch::Tensor& u,
                      const c10::optional<torch::Tensor>& styles,
                      const c10::optional<torch::Tensor>& dcoefs,
                      const c10::optional<torch::Tensor>& noise, int64_t form,
                      bool per_image) {
  check_float_cpu(x, "x");
  check_float_cpu(u, "u");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be a 4-D channels_last tensor");
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  TORCH_CHECK(u.dim() == 3 && u.size(0) == 36 && u.size(1) == channels && u.is_contiguous(),
              "u must be a contiguous [36, C, K] tensor");
  const int64_t out_channels = u.size(2);
  if (styles.has_value()) {
    check_float_cpu(*styles, "styles");
    TORCH_CHECK(styles->is_contiguous() && styles->dim() == 2 && styles->size(0) == batch &&
                    styles->size(1) == channels,
                "styles must be a contiguous [N, C] tensor");
  }
  if (dcoefs.has_value()) {
    check_float_cpu(*dcoefs, "dcoefs");
    TORCH_CHECK(dcoefs->is_contiguous() && dcoefs->dim() == 2 && dcoefs->size(0) == batch &&
                    dcoefs->size(1) == out_channels,
                "dcoefs must be a contiguous [N, K] tensor");
  }
  int64_t noise_batch = 0;
  if (noise.has_value()) {
    check_float_cpu(*noise, "noise");
    TORCH_CHECK(noise->is_contiguous() && noise->dim() == 3 && noise->size(1) == height &&
                    noise->size(2) == width && (noise->size(0) == 1 || noise->size(0) == batch),
                "noise must be a contiguous [1 or N, H, W] tensor");
    noise_batch = noise->size(0);
  }
  TORCH_CHECK(form >= -1, "form must be -1 (choose), 0 (whole) or a block size, got ", form);
  auto y = torch::empty({batch, out_channels, height, width},
                        x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const Call call{x.data_ptr<float>(), u.data_ptr<float>(),  optional_data(styles),
                  optional_data(dcoefs), optional_data(noise), y.data_ptr<float>(),
                  noise_batch,           channels,             out_channels,
                  geometry_of(batch, height, width)};
  if (form == -1) {
    form = blocked_suits(call.g) ? tiles_per_block(channels, out_channels) : 0;
  }
  // (Nothing to block without tiles or channels; the BLAS wants leading dimensions >= 1.)
  if (form == 0 || call.g.tiles == 0 || channels == 0 || out_channels == 0) {
    conv3x3_whole(call, x.options(), per_image);
  } else {
    TORCH_CHECK(winograd_blocked_available(), "the blocked form needs MKL's sgemm_ (not in this torch)");
    conv3x3_blocked(call, x.options(), form);
  }
  return y;
}

bool winograd_blocked_available() {
  return sgemm_ != nullptr && MKL_Set_Num_Threads_Local != nullptr;
}

// dL/dU for y = conv3x3(x, u): per point xi, V[xi]^T dM[xi] summed over all tiles, with V the
// input transform of x and dM = A dY A^T the gradient of y taken onto the 36 points. 36
// products per tile and channel pair where the direct weight gradient needs 144; the filter's
// own gradient is then G^T dU G (winograd.py). Tiles go through in chunks of at most
// `tiles_per_chunk` (-1 chooses: scratch of about 32 MB), each chunk's products added onto
// the last: the sum's order depends on the batch, which is fine for training's gradients.
torch::Tensor conv3x3_weight_grad(const torch::Tensor& x, const torch::Tensor& dy,
                                  int64_t tiles_per_chunk) {
  check_float_cpu(x, "x");
  check_float_cpu(dy, "dy");
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be a 4-D channels_last tensor");
  TORCH_CHECK(dy.dim() == 4 && dy.is_contiguous(at::MemoryFormat::ChannelsLast),
              "dy must be a 4-D channels_last tensor");
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  TORCH_CHECK(dy.size(0) == batch && dy.size(2) == height && dy.size(3) == width,
              "dy must have x's batch, height and width");
  TORCH_CHECK(tiles_per_chunk == -1 || tiles_per_chunk > 0,
              "tiles_per_chunk must be -1 (choose) or positive, got ", tiles_per_chunk);
  const int64_t out_channels = dy.size(1);
  const Geometry g = geometry_of(batch, height, width);
  if (g.tiles == 0 || channels == 0 || out_channels == 0) {
    return torch::zeros({36, channels, out_channels}, x.options());
  }
  auto du = torch::empty({36, channels, out_channels}, x.options());
  if (tiles_per_chunk == -1) {
    constexpr int64_t kScratchBytes = int64_t{32} << 20;
    const int64_t per_tile = 36 * (channels + out_channels) * int64_t{sizeof(float)};
    tiles_per_chunk = std::max<int64_t>(64, kScratchBytes / per_tile);
  }
  const int64_t chunk = std::min(tiles_per_chunk, g.tiles);
  auto v = torch::empty({36, chunk, channels}, x.options());
  auto d = torch::empty({36, chunk, out_channels}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* dyp = dy.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  float* dp = d.data_ptr<float>();
  for (int64_t base = 0; base < g.tiles; base += chunk) {
    const int64_t last = std::min(base + chunk, g.tiles);
    at::parallel_for(base, last, 4, [&](int64_t first, int64_t end) {
      input_tiles(xp, nullptr, vp, first, end, g, channels, base, chunk);
      gradient_tiles(dyp, dp, first, end, g, out_channels, base, chunk);
    });
    const int64_t rows = last - base;
    const auto v_rows = v.narrow(1, 0, rows).transpose(1, 2);
    if (base == 0) {
      at::bmm_out(du, v_rows, d.narrow(1, 0, rows));  // the first chunk sets du
    } else {
      du.baddbmm_(v_rows, d.narrow(1, 0, rows));
    }
  }
  return du;
}
