"""io.allocator: large blocks come from the heap and stay there once freed (glibc)."""
import os
import platform
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, sys
    from sg2_container.io.allocator import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    took = keep_freed_memory() if sys.argv[1] == "keep" else None
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(256 << 20)
    mapped = libc.mallinfo2().hblkhd  # bytes in blocks mapped on their own
    libc.free(block)
    kept = libc.mallinfo2().fordblks  # free bytes the heap keeps
    print(took, mapped, kept)
""")

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


def _probe(mode, env=None):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return out[0], int(out[1]), int(out[2])


@glibc
def test_a_large_block_is_served_and_kept_by_the_heap():
    took, mapped, kept = _probe("keep")
    assert took == "True"
    assert mapped < 256 << 20 and kept >= 256 << 20


@glibc
def test_without_it_glibc_maps_the_block_on_its_own():
    took, mapped, kept = _probe("default")
    assert took == "None" and mapped >= 256 << 20 and kept < 256 << 20


@glibc
def test_the_switch_turns_it_off():
    env = dict(os.environ, SG2_KEEP_FREED_MEMORY="0")
    took, mapped, _ = _probe("keep", env)
    assert took == "False" and mapped >= 256 << 20


def test_entry_points_set_it_up(monkeypatch):
    from click.testing import CliRunner

    from sg2_container.cli import main as cli_main
    from sg2_container.sagemaker import entrypoint

    calls = []
    monkeypatch.setattr(cli_main, "keep_freed_memory", lambda: calls.append("sg2"))
    monkeypatch.setattr(entrypoint, "keep_freed_memory", lambda: calls.append("sg2-sagemaker"))
    monkeypatch.setattr(entrypoint, "_serve", lambda args: 0)
    assert CliRunner().invoke(cli_main.cli, ["info"]).exit_code == 0
    assert entrypoint.main(["sg2-sagemaker", "serve"]) == 0
    assert calls == ["sg2", "sg2-sagemaker"]
