"""end_process: work a stop left running in a thread never holds the process past the drain."""
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent("""
    import logging, sys, threading, time
    from sg2_container.serving.server import Ended, end_process
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # A thread the interpreter's exit would join: a forward still running.
    threading.Thread(target=time.sleep, args=(float(sys.argv[1]),)).start()
    end_process(130, Ended(cut_off=1, left_running=tuple(sys.argv[2:])))
    print("returned", flush=True)
    sys.exit(0)
""")


def _run(forward_s, *left_running):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(forward_s), *left_running],
                            capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


def test_work_left_running_ends_the_process_at_once_with_the_code_and_the_log_flushed():
    result, took = _run(60, "a forward on cpu")
    assert result.returncode == 130, result.stderr
    assert "exiting without waiting for a forward on cpu" in result.stderr
    assert "returned" not in result.stdout and took < 30, took


def test_nothing_left_running_returns_to_the_caller():
    result, took = _run(3)
    # The caller's own exit then joins the thread: what a forgotten forward would cost.
    assert result.returncode == 0 and result.stdout == "returned\n" and took >= 3, took
