"""Test stand-in for the reference's torch_utils package (see ../README.md)."""
