"""`sg2 metrics` on Ctrl-C or SIGTERM (`docker stop`): the metric being computed is abandoned at
its next batch, the metrics finished before it stay printed, exit 130 with one line saying so.
It used to turn SIGTERM into KeyboardInterrupt: `stopped (Ctrl-C)` whatever the signal, and
nothing printed, since the values were only printed once every metric was done."""
import signal
import subprocess
import sys
import time

import pytest

SG2 = [sys.executable, "-m", "sg2_container.cli.main"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_abandons_the_current_metric_and_keeps_the_finished_ones(
        detector_file, metric_data, network_file, tmp_path, sig):
    cache = tmp_path / "cache"
    # ppl2_wend (a random VGG16 on 16 px images) takes seconds; fid50k_full's Inception-v3 at
    # 299 px takes seconds per batch of 2 here, so it is mid-extraction when the signal comes.
    process = subprocess.Popen(
        SG2 + ["metrics", "--network", str(network_file), "--data", str(metric_data),
               "--device", "cpu", "--cache-dir", str(cache), "--detector", str(detector_file),
               "--metrics", "ppl2_wend,fid50k_full", "--allow-random-vgg16",
               "--num-images", "20", "--batch", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # printed as ppl2_wend finishes
        process.send_signal(sig)
        signalled = time.monotonic()
        out, err = process.communicate(timeout=120)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, first + out + err
    # Within a batch: 20 generated images were not all measured, the reals never started (so no
    # feature cache was written, whole or partial), and the exit came within seconds.
    assert "generated features: 100%" not in err and "dataset features" not in err, err
    assert not cache.exists() or not list(cache.iterdir())
    assert took < 30, took
    assert first.startswith("metric ppl2_wend=") and out == "", first + out
    assert f"{signal.Signals(sig).name}: stopping cleanly" in err
    assert err.strip().splitlines()[-1] == (
        "stopped: fid50k_full abandoned between batches, no value; "
        "finished (values above): ppl2_wend"), err
    assert "Traceback" not in err
