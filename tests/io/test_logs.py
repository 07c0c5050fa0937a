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


def _inherited(env_value: str | None) -> tuple[str, str]:
    """stdout (the child's lines, then what it would pass on) of a process whose starter set
    $SG2_LOG_LEVEL to `env_value` (None: unset)."""
    import os

    code = textwrap.dedent("""
        import logging, sys
        from sg2_container.io.logs import configure_logging, passed_on
        configure_logging(stream=sys.stdout)
        logging.getLogger("sg2_container.x").info("ours")
        print(passed_on())
    """)
    env = {k: v for k, v in os.environ.items() if k != "SG2_LOG_LEVEL"}
    if env_value is not None:
        env["SG2_LOG_LEVEL"] = env_value
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env=env).stdout
    *lines, passed = out.splitlines()
    return "\n".join(lines), passed


def test_a_started_process_logs_at_the_level_its_starter_passed_on():
    """`sg2 -q local ...`: the job's entrypoint logged INFO whatever the CLI was told."""
    lines, passed = _inherited(None)
    assert "INFO sg2_container.x: ours" in lines and passed == "{'SG2_LOG_LEVEL': 'INFO'}"
    lines, passed = _inherited("warning")
    assert "ours" not in lines and passed == "{'SG2_LOG_LEVEL': 'WARNING'}"
    lines, _ = _inherited("loud")
    assert "$SG2_LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR" in lines
    assert "ours" in lines
