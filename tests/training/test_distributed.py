"""Two gloo processes on one CPU machine train one job; they equal one process."""
import pytest
import torch

from sg2_container.training import checkpoint as ckpt
from sg2_container.training.launch import run_training
from sg2_container.training.loop import train


def test_two_processes_match_one_process_with_the_same_global_batch(tiny_options, tmp_path):
    # cifar preset: no path-length term and no style mixing, the two per-process states.
    common = dict(cfg="cifar", kimg=0.016, batch=4, batch_gpu=2, snap=10, aug="ada", p=None,
                  augpipe="bgc")
    one = tiny_options(outdir=str(tmp_path / "one"), gpus=1, **common)
    two = tiny_options(outdir=str(tmp_path / "two"), gpus=2, **common)
    result_one = train(one)  # one process, two accumulation rounds of 2
    result_two = run_training(two)  # two gloo processes, one round of 2 each
    assert result_one.cur_nimg == result_two.cur_nimg == 16
    a = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "one")[-1])
    b = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "two")[-1])
    assert b["loop"]["world_size"] == 2 and len(b["ranks"]) == 2
    for part in ("G", "D", "G_ema"):
        for name, value in a[part].items():
            torch.testing.assert_close(b[part][name], value, rtol=1e-5, atol=1e-6, msg=f"{part}.{name}")
    assert a["augment"]["p"] == b["augment"]["p"]


def test_a_checkpoint_from_two_processes_continues_in_one(tiny_options, tmp_path):
    """Spot restarts may land on another instance type: 2 GPUs before, 1 after."""
    common = dict(cfg="cifar", batch=4, batch_gpu=2, snap=10, aug="ada", p=None, augpipe="bgc",
                  outdir=str(tmp_path / "run"))
    first = run_training(tiny_options(gpus=2, kimg=0.008, **common))
    assert first.finished and first.cur_nimg == 8
    second = train(tiny_options(gpus=1, kimg=0.024, **common))
    assert second.finished and second.cur_nimg == 24
    state = ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path / "run")[-1])
    assert state["loop"]["world_size"] == 1 and state.ranks[0].ada["num_steps"] == 6


def test_processes_that_found_different_checkpoints_stop_before_training(monkeypatch, tmp_path):
    """Ranks continuing from different checkpoints would run different phases and hang in
    each other's collectives: the run stops at once, naming what each process found."""
    from sg2_container.errors import UserError
    from sg2_container.training import distributed as dist_utils
    from sg2_container.training import loop

    class Found:
        path = tmp_path / "checkpoint-000000000128.pt"

    monkeypatch.setattr(dist_utils, "all_gather_objects", lambda mine: [
        mine, (None, None), ("checkpoint-000000000064.pt", None)])
    with pytest.raises(UserError, match=r"rank 0: checkpoint-000000000128.pt, rank 1: none, "
                                        r"rank 2: checkpoint-000000000064.pt"):
        loop._check_ranks_agree(Found(), None, tmp_path)
    monkeypatch.setattr(dist_utils, "all_gather_objects", lambda mine: [mine, mine])
    loop._check_ranks_agree(Found(), None, tmp_path)  # agreeing ranks go on
    # One rank refused the folder (say, changed options): the others stop too, with its reason.
    monkeypatch.setattr(dist_utils, "all_gather_objects", lambda mine: [
        mine, (None, "checkpoint-000000000128.pt: the options changed (gamma)")])
    with pytest.raises(UserError, match=r"rank 1 refused the checkpoints in .*gamma"):
        loop._check_ranks_agree(Found(), None, tmp_path)


def test_a_stop_reaches_both_processes_and_they_save_together(tiny_options, tmp_path):
    """The stop request travels between the processes over their host-side flags group: both
    end after the same step and the checkpoint holds both ranks' states."""
    import threading

    stop = threading.Event()
    stop.set()
    result = run_training(tiny_options(cfg="cifar", gpus=2, kimg=10, batch=4, batch_gpu=2,
                                       outdir=str(tmp_path / "run")), stop_event=stop)
    assert result.stopped and not result.finished
    assert result.cur_nimg == 4  # the step under way when the stop was seen, and no other
    state = ckpt.load_checkpoint(result.last_checkpoint)
    assert state["loop"]["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["loop"]["cur_nimg"] == 4


def _blocked_forever():
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # like a rank stuck in a C call
    while True:
        time.sleep(1)


def test_a_worker_blocked_past_the_stop_grace_is_killed():
    """A rank waiting for a host that never joins cannot see the stop: without a bound the job
    outlived SIGTERM until SageMaker's SIGKILL (the audit's run: over 10 minutes)."""
    import multiprocessing
    import threading
    import time

    from sg2_container.training.launch import _supervise

    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=_blocked_forever)
    worker.start()
    stop = threading.Event()
    stop.set()
    start = time.monotonic()
    failed = _supervise([worker], stop, ctx.Event(), stop_grace_s=1.0)
    assert time.monotonic() - start < 20
    assert failed == [(0, -9)]
