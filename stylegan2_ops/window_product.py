"""Weight gradients of strided convs on a CPU as one matrix product over the conv's windows.

A conv's weight gradient sums, over every output pixel, the outer product of that pixel's
incoming gradient with its input window. oneDNN computes it directly, and on channels_last
activations its AVX2 code runs at 30-47 GFLOP/s; written as one [out, pixels] x
[pixels, taps * in] product (the windows copied into rows, "im2col") it runs in the BLAS at
near its peak: the discriminator's stride-2 3x3 convs and the generator's transposed ones,
1.8-3.2x faster than oneDNN's channels_last code on an AVX2 CPU (1.2-1.4x its best layout),
and closer to float64 (docs/kernels.md).

The windows are a strided view of the channels_last activations (each window's taps and
channels contiguous rows), copied a chunk at a time (about 64 MB: whole images, or rows of one
large image), each chunk's product added onto the last. Plain stride-1 3x3 convs take the
Winograd path instead (stylegan2_ops.winograd); grouped, padded and 1x1 convs stay the
backend's.
"""
from __future__ import annotations

import torch

CHUNK_BYTES = 64 << 20


def suits(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
          padding: tuple[int, int], groups: int, output_padding: tuple[int, int]) -> bool:
    """Where this path is measured to win: CPU, float32, channels_last activations, a strided
    conv (or transposed conv) without padding or groups, a filter larger than 1x1."""
    tensors = (x, grad, weight)
    if any(t.device.type != "cpu" or t.dtype != torch.float32 or t.ndim != 4 for t in tensors):
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    channels_last = torch.channels_last
    return (groups == 1 and max(stride) > 1 and tuple(padding) == (0, 0)
            and tuple(output_padding) == (0, 0) and tuple(weight.shape[2:]) != (1, 1)
            and x.is_contiguous(memory_format=channels_last)
            and grad.is_contiguous(memory_format=channels_last))


def weight_grad(x: torch.Tensor, grad: torch.Tensor, kernel_size: tuple[int, int],
                stride: tuple[int, int], transpose: bool,
                chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """dL/dw of conv2d(x, w, stride) ([out, in, kh, kw]) or of conv_transpose2d(x, w, stride)
    ([in, out, kh, kw]), given grad = dL/dy, summed over the batch; no padding.

    A transposed conv's output pixel s*a+u receives x[a] * w[u]: its weight gradient is the
    same sum with the roles swapped, windows over its output gradient, rows from its input.
    """
    if transpose:
        return _window_product(windowed=grad, rows=x, kernel_size=kernel_size, stride=stride,
                               chunk_bytes=chunk_bytes)
    return _window_product(windowed=x, rows=grad, kernel_size=kernel_size, stride=stride,
                           chunk_bytes=chunk_bytes)


def _window_product(windowed: torch.Tensor, rows: torch.Tensor, kernel_size: tuple[int, int],
                    stride: tuple[int, int], chunk_bytes: int) -> torch.Tensor:
    """sum over images and row pixels (n, a, b) of rows[n, :, a, b] (outer) the window of
    `windowed` at (stride * a, stride * b): [rows' channels, windowed's channels, kh, kw]."""
    batch, channels, _, _ = windowed.shape
    row_channels, height, width = rows.shape[1:]
    kh, kw = kernel_size
    pixels_nhwc = windowed.permute(0, 2, 3, 1)  # a view: channels innermost
    s_n, s_h, s_w, s_c = pixels_nhwc.stride()
    window_strides = (s_n, s_h * stride[0], s_w * stride[1], s_h, s_w, s_c)
    row_vectors = rows.permute(0, 2, 3, 1)
    total = None
    row_bytes = width * kh * kw * channels * windowed.element_size()
    for first, count, top, lines in _pieces(batch, height, row_bytes, chunk_bytes):
        offset = pixels_nhwc.storage_offset() + first * s_n + top * window_strides[1]
        windows = pixels_nhwc.as_strided((count, lines, width, kh, kw, channels), window_strides,
                                         offset)
        columns = windows.reshape(-1, kh * kw * channels)
        left = row_vectors[first:first + count, top:top + lines].reshape(-1, row_channels).t()
        total = left @ columns if total is None else total.addmm_(left, columns)
    if total is None:  # an empty batch
        total = windowed.new_zeros(row_channels, kh * kw * channels)
    return total.reshape(row_channels, kh, kw, channels).permute(0, 3, 1, 2)


def _pieces(batch: int, height: int, row_bytes: int, chunk_bytes: int):
    """(first image, images, first row, rows) of about chunk_bytes of windows each: whole
    images while one fits, else one image's rows a block at a time (a 1024 px image's windows
    alone are hundreds of MB)."""
    rows = max(1, chunk_bytes // max(row_bytes, 1))
    if rows >= height:
        images = max(1, rows // max(height, 1))
        for first in range(0, batch, images):
            yield first, min(images, batch - first), 0, height
        return
    for image in range(batch):
        for top in range(0, height, rows):
            yield image, 1, top, min(rows, height - top)
