"""Persistent classes as the facts sheet (section 8.5) describes the reference's, restated.

An object of a persistent class pickles as `_reconstruct_persistent_obj(meta)`; unpickling runs
`meta['module_src']` as a fresh module and wraps the named class in `persistent_class`.
"""
import copy
import sys
import types
import uuid

import dnnlib

VERSION = 6

_import_hooks = []
_modules_by_src = {}
_src_by_module_name = {}


def import_hook(hook):
    """Registers `hook(meta) -> meta`, applied to every persistent object before it is built."""
    _import_hooks.append(hook)
    return hook


def _module_from_src(src):
    """Executes `src` once as a new module registered in sys.modules; cached by source."""
    module = _modules_by_src.get(src)
    if module is None:
        name = f"_standin_imported_{uuid.uuid4().hex}"
        module = types.ModuleType(name)
        sys.modules[name] = module
        _modules_by_src[src] = module
        _src_by_module_name[name] = src
        exec(compile(src, f"<module_src {name}>", "exec"), module.__dict__)  # noqa: S102
    return module


def _source_of_module(module_name):
    if module_name in _src_by_module_name:
        return _src_by_module_name[module_name]
    import inspect

    return inspect.getsource(sys.modules[module_name])


def is_persistent(cls):
    return getattr(cls, "_standin_persistent", False)


def persistent_class(orig_class):
    """A subclass that records its constructor arguments and pickles with its module source."""
    assert isinstance(orig_class, type)
    if is_persistent(orig_class):
        return orig_class
    assert orig_class.__module__ in sys.modules
    module_src = _source_of_module(orig_class.__module__)
    class_name = orig_class.__name__

    class Decorator(orig_class):
        _standin_persistent = True

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            meta = dict(type="class", version=VERSION, module_src=module_src,
                        class_name=class_name, state=dict(self.__dict__))
            return _reconstruct_persistent_obj, (meta,)

    Decorator.__name__ = class_name
    Decorator.__qualname__ = class_name
    return Decorator


def _reconstruct_persistent_obj(meta):
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
        assert meta is not None
    assert meta.version == VERSION, f"persistence version {meta.version}, expected {VERSION}"
    assert meta.type == "class"
    module = _module_from_src(meta.module_src)
    cls = persistent_class(module.__dict__[meta.class_name])
    obj = cls.__new__(cls)
    setstate = getattr(obj, "__setstate__", None)
    if callable(setstate):
        setstate(meta.state)
    else:
        obj.__dict__.update(meta.state)
    return obj
