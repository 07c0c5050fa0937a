"""Self-contained StyleGAN2 networks: the `module_src` that `sg2 convert x.pt y.pkl` embeds.

The reference's loader executes the `module_src` of every persistent object in a pickle, where
only torch, numpy and the reference's own `torch_utils` / `dnnlib` are importable; sg2-container
is usually not installed there. So this file imports nothing but the standard library, torch
and numpy, and its source text is embedded as is. It restates sg2_container.models.networks
(same class names, constructor kwargs, state-dict names and results) with plain PyTorch ops in
place of stylegan2_ops; tests/models/test_reference_interop.py holds the two to equal outputs.

Rules for this file, which the reference's loader imposes (facts sheet, section 8.5): nothing
here may assign `self.init_args` / `self.init_kwargs` (read-only properties under the
reference's persistence decorator); restored objects get their attributes from the pickled
state, never from `__init__`, so every attribute `forward` reads is a plain instance attribute.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

_SQRT2 = math.sqrt(2)
# name -> (function(x, alpha), default alpha, default gain)
_ACTIVATIONS = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, _SQRT2),
    "lrelu": (lambda x, a: F.leaky_relu(x, a), 0.2, _SQRT2),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, _SQRT2),
}
_NOISE_MODES = ("random", "const", "none")


# --- ops ---------------------------------------------------------------------------------------


def _make_filter(taps):
    """Float32 low-pass filter summing to 1; long 1-D filters stay separable."""
    f = torch.as_tensor(1 if taps is None else taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def _filter_wh(f):
    if f is None:
        return 1, 1
    return (int(f.shape[-1]), int(f.shape[0])) if f.ndim == 2 else (int(f.shape[0]),) * 2


def _bias_act(x, b=None, act="linear", gain=None, clamp=None):
    func, alpha, default_gain = _ACTIVATIONS[act]
    gain = default_gain if gain is None else float(gain)
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)]).to(x.dtype)
    x = func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _upfirdn(x, f, up=1, down=1, pads=(0, 0, 0, 0), gain=1):
    """Zero-insert up-sampling, pad (negative crops), FIR convolution, sub-sampling."""
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pads
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if up > 1:
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, -1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, -1, 1), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _up2(x, f):
    fw, fh = _filter_wh(f)
    pads = [(fw + 1) // 2, (fw - 2) // 2, (fh + 1) // 2, (fh - 2) // 2]
    return _upfirdn(x, f, up=2, pads=pads, gain=4)


def _down2(x, f):
    fw, fh = _filter_wh(f)
    return _upfirdn(x, f, down=2, pads=[(fw - 1) // 2, (fw - 2) // 2, (fh - 1) // 2, (fh - 2) // 2])


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    if flip_weight == transpose:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _conv_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True):
    """Convolution with FIR up- or down-sampling by 2, in the cheapest equivalent order."""
    kh, kw = int(w.shape[2]), int(w.shape[3])
    fw, fh = _filter_wh(f)
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pads = [px0, px1, py0, py1]
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        return _conv(_upfirdn(x, f, down=down, pads=pads), w, groups=groups,
                     flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return _upfirdn(x, f, up=up, pads=pads, gain=up**2)
    if down > 1 and up == 1:
        x = _upfirdn(x, f, pads=pads)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        out_ch, in_per_group = int(w.shape[0]), int(w.shape[1])
        w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
        cx, cy = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[cy, cx], groups=groups, transpose=True,
                  flip_weight=flip_weight)
        x = _upfirdn(x, f, pads=[px0 + cx, px1 + cx, py0 + cy, py1 + cy], gain=up**2)
        return _upfirdn(x, f, down=down) if down > 1 else x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    return _conv(_upfirdn(x, None, pads=pads), w, groups=groups, flip_weight=flip_weight)


def _memory_format(channels_last):
    return torch.channels_last if channels_last else torch.contiguous_format


def _normalize(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def _modulated_conv(x, weight, styles, noise=None, up=1, padding=0, resample_filter=None,
                    demodulate=True, flip_weight=True, fused_modconv=True):
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_ch * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = _conv_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding,
                           flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    x = x.reshape(1, -1, *x.shape[2:])
    x = _conv_resample(x, w.reshape(-1, in_ch, kh, kw).to(x.dtype), resample_filter, up=up,
                       padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x


def _fp16_from(img_resolution, num_fp16_res):
    return max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)


# --- layers ------------------------------------------------------------------------------------


class FullyConnectedLayer(torch.nn.Module):
    def __init__(self, in_features, out_features, bias=True, activation="linear",
                 lr_multiplier=1, bias_init=0):
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = (torch.nn.Parameter(torch.full([out_features], float(bias_init)))
                     if bias else None)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return _bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear",
                 up=1, down=1, resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 channels_last=False, trainable=True):
        super().__init__()
        self.activation, self.act_gain = activation, _ACTIVATIONS[activation][2]
        self.up, self.down, self.conv_clamp = up, down, conv_clamp
        self.register_buffer("resample_filter", _make_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        weight = weight.to(memory_format=_memory_format(channels_last))
        bias_tensor = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_tensor) if bias else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias_tensor)

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        x = _conv_resample(x, w.to(x.dtype), self.resample_filter, up=self.up, down=self.down,
                           padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return _bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


# --- generator ---------------------------------------------------------------------------------


class MappingNetwork(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None,
                 layer_features=None, activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws, self.num_layers, self.w_avg_beta = num_ws, num_layers, w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation,
                lr_multiplier=lr_multiplier))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        x = None
        if self.z_dim > 0:
            x = _normalize(z.to(torch.float32))
        if self.c_dim > 0:
            y = _normalize(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class SynthesisLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1,
                 use_noise=True, activation="lrelu", resample_filter=(1, 3, 3, 1),
                 conv_clamp=None, channels_last=False):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.act_gain = _ACTIVATIONS[activation][2]
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", _make_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=_memory_format(channels_last)))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1):
        if noise_mode not in _NOISE_MODES:
            raise ValueError(f"noise_mode {noise_mode!r} is not one of {_NOISE_MODES}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution],
                                device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = _modulated_conv(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                            resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                            fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return _bias_act(x, self.bias.to(x.dtype), act=self.activation,
                         gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None,
                 channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=_memory_format(channels_last)))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = _modulated_conv(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return _bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(torch.nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 architecture="skip", resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 use_fp16=False, fp16_channels_last=False, **layer_kwargs):
        super().__init__()
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", _make_filter(resample_filter))
        self.num_conv = self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp, channels_last=self.channels_last,
                                    **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, **layer_kwargs):
        w_iter = iter(ws.unbind(dim=1))
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        memory_format = _memory_format(self.channels_last and not force_fp32)
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)
        kw = dict(fused_modconv=fused_modconv, **layer_kwargs)
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = self.conv1(x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]), next(w_iter), **kw)
        elif self.architecture == "resnet":
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), **kw)
            x = y + self.conv1(x, next(w_iter), gain=np.sqrt(0.5), **kw)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv1(self.conv0(x, next(w_iter), **kw), next(w_iter), **kw)
        if img is not None:
            img = _up2(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(torch.nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 num_fp16_res=0, **block_kwargs):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2_res = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2_res + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_from = _fp16_from(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, res,
                                   img_channels, is_last, use_fp16=res >= fp16_from,
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws, **block_kwargs):
        ws = ws.to(torch.float32)
        blocks = [getattr(self, f"b{res}") for res in self.block_resolutions]
        block_ws, w_idx = [], 0
        for block in blocks:  # a block's torgb shares its w with the next block's first conv
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        x = img = None
        for block, cur_ws in zip(blocks, block_ws):
            x, img = block(x, img, cur_ws, **block_kwargs)
        return img


class Generator(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None,
                 synthesis_kwargs=None):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)


# --- discriminator -----------------------------------------------------------------------------


class DiscriminatorBlock(torch.nn.Module):
    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels,
                 first_layer_idx, architecture="resnet", activation="lrelu",
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False,
                 fp16_channels_last=False, freeze_layers=0):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", _make_filter(resample_filter))
        self.num_layers = 0

        def trainable():
            self.num_layers += 1
            return first_layer_idx + self.num_layers - 1 >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp,
                      channels_last=self.channels_last)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1,
                                       trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3,
                                 trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2,
                                 resample_filter=resample_filter, trainable=trainable(), **common)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    resample_filter=resample_filter, trainable=trainable(),
                                    channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=False):
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        memory_format = _memory_format(self.channels_last and not force_fp32)
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = _down2(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=np.sqrt(0.5))
            x = y + self.conv1(self.conv0(x), gain=np.sqrt(0.5))
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(torch.nn.Module):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # groups take strided samples
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture="resnet",
                 mbstd_group_size=4, mbstd_num_channels=1, activation="lrelu", conv_clamp=None):
        super().__init__()
        self.cmap_dim, self.architecture = cmap_dim, architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1,
                                       activation=activation)
        self.mbstd = (MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels,
                                      activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(torch.nn.Module):
    def __init__(self, c_dim, img_resolution, img_channels, architecture="resnet",
                 channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                 cmap_dim=None, block_kwargs=None, mapping_kwargs=None, epilogue_kwargs=None):
        super().__init__()
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        log2_res = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(log2_res, 2, -1)]
        channels = {res: min(channel_base // res, channel_max)
                    for res in self.block_resolutions + [4]}
        fp16_from = _fp16_from(img_resolution, num_fp16_res)
        cmap_dim = 0 if c_dim == 0 else (channels[4] if cmap_dim is None else cmap_dim)
        self.cmap_dim = cmap_dim
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res],
                                       channels[res // 2], res, first_layer_idx=layer_idx,
                                       use_fp16=res >= fp16_from, **(block_kwargs or {}),
                                       **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None,
                                          w_avg_beta=None, **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **(epilogue_kwargs or {}), **common)

    def forward(self, img, c=None, **block_kwargs):
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)
