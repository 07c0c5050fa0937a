"""Test stand-in for the reference's dnnlib package (see ../README.md)."""
from dnnlib.util import EasyDict  # noqa: F401
