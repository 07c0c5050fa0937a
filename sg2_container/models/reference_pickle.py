"""Reference network pickles (`network-snapshot-*.pkl`, the published `.pkl` files): import
without running their code, and export of our networks in the same layout.

The reference pickles each network as a call to
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` carries the Python
source of the defining module (`module_src`) and the instance state. Unpickling normally executes
that source. Our importer instead reads the file with a restricted unpickler that admits only the
globals this format needs (`_SAFE_GLOBALS` below), each mapped to a function of ours that builds
plain data: persistent objects become inert `PersistentRecord`s whose `module_src` is never kept
or looked at. Our own networks are then rebuilt from the records' `_init_kwargs` and loaded with
the tensors found in their `_parameters` and `_buffers`.

Export writes the same layout. Its `module_src` is the source of
`sg2_container.models.portable_networks` (torch and numpy only), and each network is pickled as
an object of those classes, whole instance dict included, so the reference's own loader rebuilds
working networks from the file alone, without sg2-container installed. Our importer never runs
that source. See docs/model-files.md.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import io
import logging
import pickle
import re
import types
from pathlib import Path
from typing import Any

from sg2_container.errors import UserError, kind_of
from sg2_container.io.atomic import write_atomically
from sg2_container.models.state import (
    ModelBundle,
    build_network,
    cpu_state_dict,
    network_kwargs,
    plain_json,
)

log = logging.getLogger(__name__)

PERSISTENCE_VERSION = 6  # the reference's persistent-object format version
NETWORK_CLASSES = {"G": "Generator", "G_ema": "Generator", "D": "Discriminator"}


class _Refused(pickle.UnpicklingError):
    """Raised inside the unpickler; turned into a UserError naming the file."""


@dataclasses.dataclass
class PersistentRecord:
    """What a reference persistent object becomes here: its class name and state, as data."""

    class_name: str
    version: int
    state: dict


# ---------------------------------------------------------------------------------------------
# Safe stand-ins for the globals a network pickle uses


def _persistent_record(meta):
    """Stands in for `torch_utils.persistence._reconstruct_persistent_obj`; keeps no source."""
    if not isinstance(meta, dict):
        raise _Refused(f"a persistent object's meta is {kind_of(meta)}, not a dict")
    if meta.get("type") != "class":
        raise _Refused(f"persistent object of unsupported type {meta.get('type')!r}")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise _Refused("a persistent object has no class_name or no state dict")
    version = meta.get("version")
    return PersistentRecord(class_name, version if isinstance(version, int) else -1, dict(state))


def _check_no_hooks(hooks, what: str) -> None:
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks) > 0):
        raise _Refused(f"a {what} carries backward hooks (code), which a network never needs")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, meta=None):
    """Checks the arguments, then lets torch build the tensor view of the storage."""
    import torch

    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise _Refused(f"a tensor's storage is {kind_of(storage)}")
    ints = [storage_offset, *size, *stride]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        raise _Refused("a tensor's offset, size or stride is not made of integers")
    _check_no_hooks(hooks, "tensor")
    if meta not in (None, {}):
        raise _Refused("a tensor carries extra metadata")
    try:
        return torch._utils._rebuild_tensor_v2(
            storage, storage_offset, tuple(size), tuple(stride), bool(requires_grad),
            collections.OrderedDict(),
        )
    except RuntimeError as exc:
        raise _Refused(f"a tensor does not fit its storage ({exc})") from exc


def _rebuild_parameter(data, requires_grad, hooks):
    import torch

    if not isinstance(data, torch.Tensor):
        raise _Refused(f"a parameter holds {kind_of(data)}, not a tensor")
    _check_no_hooks(hooks, "parameter")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _load_storage_from_bytes(blob):
    """Stands in for `torch.storage._load_from_bytes`: the blob is a nested torch.save (zip
    or the legacy format of PyTorch < 1.6), read with weights_only=True."""
    import torch

    if not isinstance(blob, (bytes, bytearray)):
        raise _Refused(f"a storage blob is {kind_of(blob)}, not bytes")
    try:
        storage = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means a corrupt or unsafe blob
        raise _Refused(f"a tensor storage could not be read safely ({exc})") from exc
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise _Refused(f"a storage blob holds {kind_of(storage)}, not a storage")
    return storage


def _torch_size(dims=()):
    import torch

    if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise _Refused("a torch.Size holds non-integers")
    return torch.Size(dims)


_NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex


def _numpy_dtype(spec, align=False, copy=True):
    """Stands in for `numpy.dtype`: numeric dtypes only, always a fresh object (BUILD follows)."""
    import numpy as np

    if not isinstance(spec, str):
        raise _Refused(f"numpy.dtype called with {kind_of(spec)}")
    try:
        dtype = np.dtype(spec, bool(align), True)
    except TypeError as exc:
        raise _Refused(f"unknown numpy dtype {spec!r}") from exc
    if dtype.kind not in _NUMERIC_KINDS:
        raise _Refused(f"numpy dtype {spec!r} is not numeric")
    return dtype


def _numpy_scalar(dtype, data=None):
    """Stands in for `numpy.(_)core.multiarray.scalar`: a numeric scalar from its raw bytes."""
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or dtype.fields:
        raise _Refused("numpy scalar of a non-numeric dtype")
    if isinstance(data, str):  # protocol-2 pickles from Python 2 keep raw bytes as str
        data = data.encode("latin-1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused("numpy scalar with malformed data")
    return np.frombuffer(data, dtype=dtype)[0]


def _codecs_encode(text, encoding="utf-8"):
    """Protocol-2 pickles store bytes as `_codecs.encode(str, 'latin1')`; nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode used for something other than bytes")
    return text.encode("latin-1")


class _KwargsDict(dict):
    """Stands in for `dnnlib.util.EasyDict`: items only, turned into a plain dict later."""


@functools.cache
def _safe_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> our stand-in, for every global a network pickle may reference."""
    return {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("_codecs", "encode"): _codecs_encode,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch", "Size"): _torch_size,
        ("numpy.core.multiarray", "scalar"): _numpy_scalar,
        ("numpy._core.multiarray", "scalar"): _numpy_scalar,
        ("numpy", "dtype"): _numpy_dtype,
        ("dnnlib.util", "EasyDict"): _KwargsDict,
        ("dnnlib", "EasyDict"): _KwargsDict,
    }


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals are looked up only in `_safe_globals()`."""

    def find_class(self, module, name):
        module = _PY2_MODULES.get(module, module)  # protocol-2 pickles use Python 2's names
        target = _safe_globals().get((module, name))
        if target is not None:
            return target
        if module.startswith("dnnlib.tflib"):
            raise _Refused(
                f"it references {module}.{name}: this is a TensorFlow-era StyleGAN2 pickle; "
                "convert it with the reference's legacy.py to a PyTorch pickle first"
            )
        raise _Refused(f"it references {module}.{name}, which a network pickle never needs")

    def persistent_load(self, pid):
        raise _Refused("it uses pickle persistent ids, which a network pickle never does")


# ---------------------------------------------------------------------------------------------
# Import


def read_reference_pickle(path) -> dict:
    """Unpickles a network pickle into plain data and `PersistentRecord`s; runs no code."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except _Refused as exc:
        raise UserError(f"refusing to load {path.name}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RecursionError, OverflowError) as exc:
        raise UserError(f"{path.name}: the network pickle is truncated or corrupt ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path.name}: not a network pickle (it holds {kind_of(data)})")
    return data


def plain_kwargs(value: Any, where: str) -> Any:
    """EasyDicts and OrderedDicts -> dicts, numpy scalars -> numbers, recursively."""
    return plain_json(value, where)


def flatten_state(state: dict, prefix: str = "", where: str = "") -> dict:
    """A flat state dict (dotted names) from a record state's `_parameters`, `_buffers` and,
    in turn, its `_modules`; non-persistent buffers are left out, as `state_dict()` does."""
    import torch

    out: dict[str, Any] = {}
    skip = state.get("_non_persistent_buffers_set") or ()
    for group in ("_parameters", "_buffers"):
        entries = state.get(group) or {}
        if not isinstance(entries, dict):
            raise UserError(f"{where}: '{prefix}{group}' is {kind_of(entries)}")
        for name, tensor in entries.items():
            if tensor is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise UserError(f"{where}: '{prefix}{name}' is {kind_of(tensor)}")
            out[prefix + name] = tensor.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(getattr(child, "state", None), dict):
            raise UserError(
                f"{where}: sub-module '{prefix}{name}' is {kind_of(child)}, "
                "not a persistent network object"
            )
        out.update(flatten_state(child.state, f"{prefix}{name}.", where))
    return out


def record_kwargs(record: PersistentRecord, where: str) -> dict:
    """The constructor kwargs a record carries; positional args are not supported."""
    if record.state.get("_init_args"):
        raise UserError(f"{where}: has positional constructor args (_init_args); expected none")
    kwargs = record.state.get("_init_kwargs")
    if not isinstance(kwargs, dict):
        raise UserError(f"{where}: has no _init_kwargs dict")
    return plain_kwargs(kwargs, f"{where}: _init_kwargs")


def load_reference_pickle(path, device="cpu") -> ModelBundle:
    """Rebuilds our G_ema (and G, D when present) from a reference network pickle."""
    path = Path(path)
    data = read_reference_pickle(path)
    nets = {}
    for part, class_name in NETWORK_CLASSES.items():
        record = data.get(part)
        if record is None:
            continue
        where = f"{path.name}: {part}"
        if not isinstance(record, PersistentRecord):
            raise UserError(f"{where}: is {kind_of(record)}, not a persistent network")
        if record.class_name != class_name:
            raise UserError(f"{where}: is a {record.class_name}; expected a {class_name}")
        if record.version != PERSISTENCE_VERSION:
            log.warning("%s: persistence version %s (expected %s)", where, record.version,
                        PERSISTENCE_VERSION)
        net = build_network(part, record_kwargs(record, where), path.name,
                            flatten_state(record.state, where=where))
        nets[part] = net.eval().to(device)
        log.info("%s: imported %s", where, class_name)
    if "G_ema" not in nets:
        raise UserError(f"{path.name}: the network pickle has no G_ema")
    return ModelBundle(
        G_ema=nets["G_ema"], G=nets.get("G"), D=nets.get("D"),
        metadata=_import_metadata(path, data), format_version=None,
        source_kind="reference-pickle",
    )


def _import_metadata(path: Path, data: dict) -> dict:
    """What a snapshot says besides the networks: dataset kwargs, augment p, kimg."""
    meta: dict[str, Any] = {}
    own = data.get("sg2_metadata")
    if isinstance(own, dict):  # written by our export
        meta.update(plain_kwargs(own, f"{path.name}: sg2_metadata"))
    meta["source"] = {"kind": "reference-pickle", "file": path.name}
    if isinstance(data.get("training_set_kwargs"), dict):
        meta["training_set_kwargs"] = plain_kwargs(
            data["training_set_kwargs"], f"{path.name}: training_set_kwargs"
        )
    pipe = data.get("augment_pipe")
    p = (pipe.state.get("_buffers") or {}).get("p") if isinstance(pipe, PersistentRecord) else None
    if p is not None and getattr(p, "numel", lambda: 0)() == 1:
        meta["augment_p"] = float(p)
    match = re.fullmatch(r"network-snapshot-(\d+)\.pkl", path.name)
    if match:
        meta.setdefault("kimg", int(match.group(1)))
    return meta


# ---------------------------------------------------------------------------------------------
# Export


def _reference_reconstruct_token(meta):
    """Never called: the export pickler writes it as the reference's reconstruct function."""
    raise RuntimeError("placeholder for torch_utils.persistence._reconstruct_persistent_obj")


class _ExportRecord:
    """A persistent object as the reference pickles it: a call to its reconstruct function."""

    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return (_reference_reconstruct_token, (self.meta,))


def _portable_kwargs(value):
    """Constructor kwargs with every dict as an EasyDict, as the reference's train.py passes
    them (its tools read nested kwargs by attribute)."""
    if isinstance(value, dict):
        return _ExportEasyDict((k, _portable_kwargs(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_portable_kwargs(v) for v in value]
    return value


def _easydict_token(*args, **kwargs):
    """Never called: the export pickler writes it as `dnnlib.util.EasyDict`."""
    raise RuntimeError("placeholder for dnnlib.util.EasyDict")


class _ExportEasyDict(dict):
    """A kwargs dict that pickles as `dnnlib.util.EasyDict()` plus its items."""

    def __reduce__(self):
        return (_easydict_token, (), None, None, iter(self.items()))


_EXPORT_GLOBALS = {
    _reference_reconstruct_token: b"torch_utils.persistence\n_reconstruct_persistent_obj\n",
    _easydict_token: b"dnnlib.util\nEasyDict\n",
}


class _ExportPickler(pickle._Pickler):
    """The pure-Python pickler, so that our placeholders can be written under the reference's
    global names (the C pickler insists that every global is importable here)."""

    def save_global(self, obj, name=None):
        if obj in _EXPORT_GLOBALS:
            self.write(pickle.GLOBAL + _EXPORT_GLOBALS[obj])
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = save_global  # the base table points at the base method


def portable_module_src() -> str:
    """The `module_src` of every exported object: the source of `portable_networks`, which
    needs only torch and numpy (so the reference's loader runs it without sg2-container)."""
    from sg2_container.models import portable_networks

    return Path(portable_networks.__file__).read_text(encoding="utf-8")


def portable_copy(net, part: str):
    """The same network as a `portable_networks` object (same kwargs and weights): what the
    reference's loader will rebuild from the export."""
    import torch

    from sg2_container.models import portable_networks

    cls = getattr(portable_networks, NETWORK_CLASSES[part])
    kwargs = network_kwargs(net, part)
    with torch.random.fork_rng(devices=[]):  # random init, overwritten below
        copy = cls(**kwargs)
    copy.load_state_dict(cpu_state_dict(net, float32=True), strict=True)
    return copy.eval().requires_grad_(False)


def _module_record(module, module_src: str, init_kwargs: dict | None) -> _ExportRecord:
    """One module as the reference pickles it: its whole instance dict (the restored object
    gets no `__init__` call), parameters and persistent buffers as CPU float32, children as
    records, `_init_args`/`_init_kwargs` (the constructor kwargs on the top level only)."""
    import torch

    def cpu32(t):
        t = t.detach().to("cpu")
        return (t.float() if t.is_floating_point() else t).contiguous().clone()

    nonpersistent = set(getattr(module, "_non_persistent_buffers_set", ()))
    state = {}
    for key, value in vars(module).items():
        if "hook" in key and isinstance(value, dict) and value:
            raise ValueError(f"{type(module).__name__} has {key} registered; hooks are code "
                             "and cannot be exported")
        state[key] = value
    state.update(
        _parameters=collections.OrderedDict(
            (n, None if p is None else torch.nn.Parameter(cpu32(p), requires_grad=False))
            for n, p in module._parameters.items()
        ),
        _buffers=collections.OrderedDict(
            (n, None if b is None else cpu32(b)) for n, b in module._buffers.items()
            if n not in nonpersistent
        ),
        _non_persistent_buffers_set=set(),
        _modules=collections.OrderedDict(
            (n, None if c is None else _module_record(c, module_src, None))
            for n, c in module._modules.items()
        ),
        _init_args=(),
        _init_kwargs=_portable_kwargs(init_kwargs if init_kwargs is not None else {}),
        training=False,
    )
    meta = {"type": "class", "version": PERSISTENCE_VERSION, "module_src": module_src,
            "class_name": type(module).__name__, "state": state}
    return _ExportRecord(meta)


def save_reference_pickle(path, *, G_ema, G=None, D=None, metadata: dict | None = None) -> Path:
    """Writes a network pickle in the reference's snapshot layout (atomically). The networks
    are written as `portable_networks` objects, so the reference's own loader can rebuild and
    run them from the embedded source alone."""
    nets = {"G": G, "D": D, "G_ema": G_ema}
    nets = {part: net for part, net in nets.items() if net is not None}
    module_src = portable_module_src()
    metadata = plain_json(metadata or {}, "metadata")
    data: dict[str, Any] = {}
    if "training_set_kwargs" in metadata:
        data["training_set_kwargs"] = metadata["training_set_kwargs"]
    for part, net in nets.items():
        data[part] = _module_record(portable_copy(net, part), module_src, network_kwargs(net, part))
    data["augment_pipe"] = None
    data["sg2_metadata"] = metadata
    if "G" not in nets or "D" not in nets:
        log.warning("%s: no %s; the reference's legacy.load_network_pkl (generate.py, --resume) "
                    "requires G, D and G_ema: convert a model file that holds all three", path,
                    " or ".join(p for p in ("G", "D") if p not in nets))
    return write_atomically(path, lambda f: _ExportPickler(f, protocol=3).dump(data))
