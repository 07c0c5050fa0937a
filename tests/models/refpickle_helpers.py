"""Builds network pickles in the reference's persistent layout, without the reference's code.

A throwaway `torch_utils.persistence` module (and `dnnlib.util`) is put in sys.modules only
while a pickle is written, so that pickle can name their globals; objects reduce to
`_reconstruct_persistent_obj(meta)` exactly as the reference's persistent classes do.
"""
import collections
import contextlib
import io
import pickle
import sys
import types
import warnings

import numpy as np
import torch

BUFFER_NAMES = {"resample_filter", "noise_const", "w_avg"}


def _reconstruct_persistent_obj(meta):
    raise AssertionError("the test's persistence stub must never be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Like dnnlib.util.EasyDict: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __setattr__(self, name, value):
        self[name] = value


EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def fake_reference_modules():
    """Registers throwaway `torch_utils.persistence` and `dnnlib.util` modules while pickling."""
    made = {}
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        assert name not in sys.modules, f"a real {name} is imported; these tests need it absent"
        made[name] = types.ModuleType(name)
    made["torch_utils"].persistence = made["torch_utils.persistence"]
    made["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    made["dnnlib"].util = made["dnnlib.util"]
    made["dnnlib.util"].EasyDict = EasyDict
    sys.modules.update(made)
    try:
        yield
    finally:
        for name in made:
            del sys.modules[name]


class Persistent:
    """Pickles as the reference's persistent objects do: `_reconstruct_persistent_obj(meta)`."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


class Evil:
    """Pickles as a call of `func(*args)`: any global at all."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _old_numpy_scalar(*args):
    raise AssertionError("token only")


def _zip_storage_loader(*args):
    raise AssertionError("token only")


class _StorageBlob:
    """A storage pickled as `torch.storage._load_from_bytes(blob)`, blob in zip or legacy form."""

    def __init__(self, tensor, legacy):
        self.tensor, self.legacy = tensor, legacy

    def __reduce__(self):
        storage = self.tensor.__reduce_ex__(2)[1][0]  # the tensor's own TypedStorage
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
            torch.save(storage, buf, _use_new_zipfile_serialization=not self.legacy)
        return (torch.storage._load_from_bytes, (buf.getvalue(),))


class _TensorAs:
    """A tensor pickled through `_rebuild_tensor_v2` with a chosen storage format."""

    def __init__(self, tensor, legacy):
        self.tensor, self.legacy = tensor.detach().contiguous(), legacy

    def __reduce__(self):
        t = self.tensor
        args = (_StorageBlob(t, self.legacy), 0, tuple(t.shape), t.stride(), False,
                collections.OrderedDict())
        return (torch._utils._rebuild_tensor_v2, args)


class _ParameterAs(_TensorAs):
    def __reduce__(self):
        return (torch._utils._rebuild_parameter,
                (_TensorAs(self.tensor, self.legacy), False, collections.OrderedDict()))


class _OldNumpyScalar:
    """A numpy scalar under its NumPy 1.x global name `numpy.core.multiarray.scalar`."""

    def __init__(self, value):
        self.value = np.float64(value)

    def __reduce__(self):
        return (_old_numpy_scalar, (self.value.dtype, self.value.tobytes()))


def named_call(module, name, *args):
    """An object that pickles as a call of the global `module.name` (which need not exist)."""
    def token(*a):
        raise AssertionError("token only")

    RenamingPickler.NAMES[token] = (module, name)
    return Evil(token, *args)


class RenamingPickler(pickle._Pickler):
    """The pure-Python pickler, writing our token functions under other modules' names."""

    NAMES = {_old_numpy_scalar: ("numpy.core.multiarray", "scalar")}

    def save_global(self, obj, name=None):
        target = self.NAMES.get(obj) if isinstance(obj, types.FunctionType) else None
        if target is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{target[0]}\n{target[1]}\n".encode())
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = save_global


def record_tree(state_dict, class_name, init_kwargs, module_src, *, storage="native",
                numpy_scalars="new", easydict=False, extra_child_state=None):
    """Persistent records for a flat state dict: a record per dotted prefix, parameters and
    buffers (by BUFFER_NAMES) in their module's state, `_init_kwargs` on the top record.

    storage: 'native' (plain tensors; torch decides), 'legacy' or 'zip' storage blobs.
    numpy_scalars: 'new' (numpy._core), 'old' (numpy.core) or None: a `weight_gain` attribute.
    """
    def wrap(tensor, param):
        if storage == "native":
            t = tensor.detach().clone()
            return torch.nn.Parameter(t, requires_grad=False) if param else t
        return (_ParameterAs if param else _TensorAs)(tensor, storage == "legacy")

    def new_state(kwargs):
        state = {
            "_parameters": collections.OrderedDict(), "_buffers": collections.OrderedDict(),
            "_non_persistent_buffers_set": set(), "_modules": collections.OrderedDict(),
            "_backward_hooks": collections.OrderedDict(),
            "_forward_hooks": collections.OrderedDict(),
            "training": False, "_init_args": (), "_init_kwargs": kwargs,
        }
        if numpy_scalars == "new":
            state["weight_gain"] = np.float64(0.125)
        elif numpy_scalars == "old":
            state["weight_gain"] = _OldNumpyScalar(0.125)
        return state

    top_kwargs = _to_easydict(init_kwargs) if easydict else dict(init_kwargs)
    states = {"": new_state(top_kwargs)}
    children = collections.defaultdict(list)
    for name, tensor in state_dict.items():
        *path, leaf = name.split(".")
        for depth in range(len(path)):
            prefix = ".".join(path[: depth + 1])
            if prefix not in states:
                states[prefix] = new_state(EasyDict() if easydict else {})
                children[".".join(path[:depth])].append(prefix)
        group = "_buffers" if leaf in BUFFER_NAMES else "_parameters"
        states[".".join(path)][group][leaf] = wrap(tensor, group == "_parameters")
    if extra_child_state:
        states[next(iter(children[""]))].update(extra_child_state)

    def build(prefix):
        state = states[prefix]
        for child in children[prefix]:
            state["_modules"][child.rsplit(".", 1)[-1]] = build(child)
        name = class_name if prefix == "" else "Layer"
        return Persistent({"type": "class", "version": 6, "module_src": module_src,
                           "class_name": name, "state": state})

    return build("")


def _to_easydict(value):
    if isinstance(value, dict):
        return EasyDict({k: _to_easydict(v) for k, v in value.items()})
    return value


def write_reference_pickle(path, data, protocol=4):
    """Pickles `data` (holding Persistent records) as the reference's training loop would."""
    with fake_reference_modules(), open(path, "wb") as f:
        RenamingPickler(f, protocol=protocol).dump(data)
    return path


def golden_snapshot(golden, module_src, **tree_kwargs):
    """A snapshot dict (training_set_kwargs, G, D, G_ema, augment_pipe) of the golden nets."""
    def tree(key, class_name):
        return record_tree(golden[f"{key}_state_dict"], class_name, golden[f"{key}_kwargs"],
                           module_src, **tree_kwargs)

    pipe_state = {"_parameters": collections.OrderedDict(), "_modules": collections.OrderedDict(),
                  "_buffers": collections.OrderedDict(p=torch.tensor(0.25)),
                  "_init_args": (), "_init_kwargs": {"xflip": 1}, "training": False}
    return {
        "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                "path": "data.zip", "use_labels": False, "max_size": 10,
                                "xflip": False, "resolution": 32},
        "G": tree("G", "Generator"),
        "D": tree("D", "Discriminator"),
        "G_ema": tree("G", "Generator"),
        "augment_pipe": Persistent({"type": "class", "version": 6, "module_src": module_src,
                                    "class_name": "AugmentPipe", "state": pipe_state}),
    }


def marker_source(marker):
    """A module_src that would leave a file behind if anyone executed it."""
    return f"open({str(marker)!r}, 'w').write('module_src was executed')\n"
