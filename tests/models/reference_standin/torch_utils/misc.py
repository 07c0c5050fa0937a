"""Copies parameters and buffers between two networks by name (the rebuild idiom)."""
import torch


def named_params_and_buffers(module):
    return list(module.named_parameters()) + list(module.named_buffers())


def copy_params_and_buffers(src, dst, require_all=False):
    found = dict(named_params_and_buffers(src))
    for name, tensor in named_params_and_buffers(dst):
        if name not in found:
            assert not require_all, f"{name} is missing from the source network"
            continue
        with torch.no_grad():
            tensor.copy_(found[name].detach()).requires_grad_(tensor.requires_grad)
