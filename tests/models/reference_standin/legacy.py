"""load_network_pkl: how the reference's tools open a snapshot pickle (facts sheet, 8.5)."""
import pickle

import torch

from torch_utils import misc


def load_network_pkl(f):
    data = pickle.Unpickler(f).load()  # globals are imported as named: module_src runs
    data.setdefault("training_set_kwargs", None)
    data.setdefault("augment_pipe", None)
    for key in ("G", "D", "G_ema"):
        assert isinstance(data[key], torch.nn.Module), f"{key} is a {type(data[key])}"
    assert isinstance(data["training_set_kwargs"], (dict, type(None)))
    assert isinstance(data["augment_pipe"], (torch.nn.Module, type(None)))
    return data


def rebuild(old):
    """The reference's re-construction idiom: a fresh object from the recorded kwargs, with the
    old one's parameters and buffers copied in by name."""
    new = type(old)(*old.init_args, **old.init_kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(old, new, require_all=True)
    return new
