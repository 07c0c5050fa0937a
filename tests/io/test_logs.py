"""The one logging set-up, in a fresh interpreter (basicConfig acts once per process)."""
import subprocess
import sys
import textwrap


def _run(level: str) -> str:
    code = textwrap.dedent(f"""
        import logging, sys
        from sg2_container.io.logs import configure_logging
        configure_logging(logging.{level}, stream=sys.stdout, prefix="rank1 ")
        logging.getLogger("torch._subclasses.fake_tensor").info("FakeTensor cache stats:")
        logging.getLogger("torch").warning("a torch warning")
        logging.getLogger("sg2_container.x").info("ours")
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_torch_info_lines_only_in_debug_and_ours_in_the_one_format():
    out = _run("INFO")
    assert "FakeTensor" not in out and "a torch warning" in out
    assert " rank1 INFO sg2_container.x: ours" in out
    assert "FakeTensor cache stats" in _run("DEBUG")
    quiet = _run("WARNING")
    assert "ours" not in quiet and "a torch warning" in quiet
