"""The training loop: phases, ticks, EMA, ADA, snapshots, stop requests, exact resume.

It knows nothing of SageMaker: it gets options, plain paths and a stop event. Re-running the
same options on the same outdir continues from the newest valid checkpoint there.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch

from sg2_container.data.dataset import ImageFolderDataset, content_fingerprint
from sg2_container.errors import UserError
from sg2_container.io.atomic import write_text_atomically
from sg2_container.io.cores import usable_cores
from sg2_container.io.signals import ignore_stop_signals
from sg2_container.models.files import save_model
from sg2_container.models.networks import Discriminator, Generator
from sg2_container.options import TrainingOptions, TrainingPlan, make_plan
from sg2_container.training import checkpoint as ckpt
from sg2_container.training import distributed as dist_utils
from sg2_container.training.loss import PHASES, LossSettings, StyleGAN2Loss
from sg2_container.training.metrics_hook import snapshot_metrics
from sg2_container.training.report import Reporter, TickStats, grid_shape, status_line
from sg2_container.training.resume import load_resume_weights, resolve_resume_path
from sg2_container.training.rng import capture_rng, chunk_seed, restore_rng
from sg2_container.training.sampler import StepSampler

log = logging.getLogger("sg2_container.training")



@dataclasses.dataclass
class TrainingResult:
    run_dir: Path
    cur_nimg: int
    finished: bool
    stopped: bool
    final_model: Path | None
    last_checkpoint: Path | None


@dataclasses.dataclass
class _Run:
    """The objects a run works on, in one place for checkpointing."""

    options: TrainingOptions
    plan: TrainingPlan
    dataset: ImageFolderDataset
    device: torch.device
    group: dist_utils.ProcessGroupInfo
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    loss: StyleGAN2Loss
    augment_pipe: torch.nn.Module | None
    ada: object | None
    latent_gen: torch.Generator
    counters: ckpt.LoopCounters
    tick_stats: TickStats
    meaning: dict


def _make_optimizer(module: torch.nn.Module, lrate: float, reg_interval: int) -> torch.optim.Optimizer:
    """Adam with the lazy-regularisation adjustment of lr and betas (ratio k / (k + 1))."""
    ratio = reg_interval / (reg_interval + 1)
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=lrate * ratio, betas=(0.0**ratio, 0.99**ratio), eps=1e-8)


def _build_run(options: TrainingOptions, device: torch.device,
               group: dist_utils.ProcessGroupInfo) -> _Run:
    from sg2_container.training.augment import AdaController, build_augment_pipe

    dataset = ImageFolderDataset(options.data, use_labels=options.cond, max_size=options.subset,
                                 xflip=options.mirror, random_seed=options.seed)
    fingerprint = content_fingerprint(options.data)
    plan = make_plan(options, dataset.resolution, dataset.num_channels, dataset.label_dim,
                     num_gpus=group.world_size)
    torch.manual_seed(options.seed)  # same initial weights on every rank
    G = Generator(**plan.G_kwargs).train().requires_grad_(False).to(device)
    D = Discriminator(**plan.D_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe = ada = None
    if options.augpipe_name is not None and (plan.augment_p > 0 or plan.ada_target is not None):
        augment_pipe = build_augment_pipe(options.augpipe_name).train().requires_grad_(False).to(device)
        augment_pipe.p.copy_(torch.as_tensor(plan.augment_p))
        if plan.ada_target is not None:
            ada = AdaController(augment_pipe, target=plan.ada_target, interval=plan.ada_interval,
                                kimg=plan.ada_kimg, batch_size=plan.batch_size)
    opt_G = _make_optimizer(G.requires_grad_(True), plan.G_lrate, plan.G_reg_interval)
    opt_D = _make_optimizer(D.requires_grad_(True), plan.D_lrate, plan.D_reg_interval)
    G.requires_grad_(False)
    D.requires_grad_(False)
    loss = StyleGAN2Loss(G, D, LossSettings(r1_gamma=plan.loss_gamma,
                                            style_mixing_prob=plan.preset.style_mixing_prob,
                                            pl_weight=plan.preset.pl_weight), augment_pipe)
    latent_gen = torch.Generator().manual_seed(options.seed)
    return _Run(options, plan, dataset, device, group, G, D, G_ema, opt_G, opt_D, loss,
                augment_pipe, ada, latent_gen, ckpt.LoopCounters(), TickStats(),
                ckpt.run_meaning(options, plan, fingerprint))


# ---- checkpoint <-> run ---------------------------------------------------------------------

def _parts(run: _Run) -> ckpt.TrainingParts:
    return ckpt.TrainingParts(G=run.G, D=run.D, G_ema=run.G_ema, opt_G=run.opt_G, opt_D=run.opt_D,
                              augment_pipe=run.augment_pipe, latent_gen=run.latent_gen)


def _checkpoint_payload(run: _Run) -> dict | None:
    """Every rank calls this (it gathers per-rank state); rank 0 gets the payload, others None."""
    ranks = dist_utils.all_gather_objects(ckpt.RankState(
        rng=capture_rng(run.device), pl_mean=float(run.loss.pl_mean),
        tick_stats=run.tick_stats.state(),
        ada=run.ada.state_dict() if run.ada is not None else None))
    if not run.group.is_main:
        return None  # only rank 0 writes: no need to copy the networks to the CPU elsewhere
    return ckpt.capture(_parts(run), counters=run.counters, ranks=ranks,
                        G_kwargs=run.plan.G_kwargs, D_kwargs=run.plan.D_kwargs,
                        options=run.options, meaning=run.meaning)


def _restore(run: _Run, checkpoint: ckpt.Checkpoint) -> None:
    ckpt.check_same_run(checkpoint, run.meaning, run.options,
                        mismatch=ckpt.shape_mismatch(checkpoint, _parts(run)))
    ckpt.restore(checkpoint, _parts(run), run.plan.G_kwargs, run.plan.D_kwargs)
    run.counters = checkpoint.counters
    mine = checkpoint.rank_state(run.group.rank, run.group.world_size)
    if mine is not None:
        run.loss.pl_mean.fill_(mine.pl_mean)
        run.tick_stats.merge(mine.tick_stats)
        restore_rng(mine.rng, run.device)
        if run.ada is not None and mine.ada is not None:
            run.ada.load_state_dict(mine.ada)
    else:
        log.warning("%s was written by %d process(es), this run has %d: per-process random state "
                    "starts fresh", checkpoint.path.name, checkpoint.world_size, run.group.world_size)
        run.loss.pl_mean.fill_(float(np.mean([r.pl_mean for r in checkpoint.ranks])))
        if run.ada is not None:  # keep p's updates on the same steps (every interval-th)
            run.ada.num_steps = run.counters.batch_idx


def _check_ranks_agree(latest: ckpt.Checkpoint | None, refusal: UserError | None,
                       run_dir: Path) -> None:
    """Every process must continue from the same checkpoint: ranks that read different ones
    (a checkpoint folder neither shared nor synced to every host) would run different phases
    and wait on each other's collectives forever. A rank that refused the folder (a newer
    format, changed options) stops them all, with its reason."""
    name = latest.path.name if latest is not None else None
    seen = dist_utils.all_gather_objects((name, None if refusal is None else str(refusal)))
    if refusal is not None:
        raise refusal
    for rank, (_, reason) in enumerate(seen):
        if reason is not None:
            raise UserError(f"rank {rank} refused the checkpoints in {run_dir}: {reason}")
    names = [found for found, _ in seen]
    if len(set(names)) > 1:
        found = ", ".join(f"rank {rank}: {name or 'none'}" for rank, name in enumerate(names))
        raise UserError(f"the processes found different checkpoints in {run_dir} ({found}); "
                        "every host needs the same checkpoint folder (shared, or synced from "
                        "the same S3 location before the job starts)")


def _check_finite(run: _Run, last_checkpoint: Path | None) -> None:
    """Stops a diverged run before anything of it is saved; every rank agrees."""
    bad = ckpt.non_finite_tensors({"G": run.G, "D": run.D, "G_ema": run.G_ema})
    if dist_utils.any_rank(bool(bad), run.group):
        raise ckpt.diverged_error(run.counters.cur_nimg / 1000, bad or ["another process"],
                                  run.plan.loss_gamma, last_checkpoint)


# ---- one optimisation step ------------------------------------------------------------------

def _phase_due(phase: str, run: _Run) -> bool:
    plan, idx = run.plan, run.counters.batch_idx
    if phase == "Greg":
        return plan.preset.pl_weight > 0 and idx % plan.G_reg_interval == 0
    if phase == "Dreg":
        return plan.loss_gamma > 0 and idx % plan.D_reg_interval == 0
    return True


def _draw_latents(run: _Run):
    """z and labels for every phase of the global batch; each rank keeps its slice."""
    plan, rank = run.plan, run.group.rank
    z = torch.randn([len(PHASES), plan.batch_size, run.G.z_dim], generator=run.latent_gen)
    c = torch.zeros([len(PHASES), plan.batch_size, run.G.c_dim])
    if run.G.c_dim > 0:
        idx = torch.randint(len(run.dataset), [len(PHASES), plan.batch_size], generator=run.latent_gen)
        c = torch.from_numpy(np.stack([run.dataset.get_label(int(i)) for i in idx.flatten()]))
        c = c.reshape(len(PHASES), plan.batch_size, -1)
    share = slice(rank * plan.batch_per_gpu_step, (rank + 1) * plan.batch_per_gpu_step)
    return _to_device(z[:, share], run.device), _to_device(c[:, share], run.device)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor to `device` without making the CPU wait for the GPU's queue (a plain copy
    from pageable memory would, once per step): staged in pinned memory, copied asynchronously."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _update_w_avg(run: _Run, w_means: list[torch.Tensor]) -> None:
    """Applies every chunk's mean w in global chunk order, as one process would."""
    beta = run.G.mapping.w_avg_beta
    if beta is None or not w_means:
        return
    w_avg = run.G.mapping.w_avg
    if not dist_utils.active():
        for mean in w_means:  # already in chunk order; stays on the device
            w_avg.copy_(mean.lerp(w_avg, beta))
        return
    gathered = dist_utils.all_gather_tensor(torch.stack(w_means))  # on the device, no wait
    # Phase-major order within the step: rank r's chunks of a phase follow rank r-1's.
    num_phases_calls = len(w_means) // run.plan.num_rounds
    for call in range(num_phases_calls):
        for rank_means in gathered:
            for mean in rank_means[call * run.plan.num_rounds:(call + 1) * run.plan.num_rounds]:
                w_avg.copy_(mean.lerp(w_avg, beta))


def _optimisation_step(run: _Run, reals: torch.Tensor, real_c: torch.Tensor, timings: dict) -> None:
    plan, counters = run.plan, run.counters
    gen_z, gen_c = _draw_latents(run)
    reals = reals.to(run.device, non_blocking=True).to(torch.float32) / 127.5 - 1
    real_c = real_c.to(run.device, non_blocking=True)
    rounds = plan.num_rounds
    w_means: list[torch.Tensor] = []
    real_signs: list[torch.Tensor] = []
    for phase_idx, phase in enumerate(PHASES):
        if not _phase_due(phase, run):
            continue
        start = time.perf_counter()
        is_G = phase.startswith("G")
        module, opt = (run.G, run.opt_G) if is_G else (run.D, run.opt_D)
        interval = plan.G_reg_interval if phase == "Greg" else plan.D_reg_interval if phase == "Dreg" else 1
        run.G.requires_grad_(is_G)
        run.D.requires_grad_(not is_G)
        opt.zero_grad(set_to_none=True)
        for r in range(rounds):
            chunk = run.group.rank * rounds + r
            torch.manual_seed(chunk_seed(run.options.seed, counters.batch_idx, phase_idx, chunk))
            part = slice(r * plan.batch_gpu, (r + 1) * plan.batch_gpu)
            result = run.loss.accumulate_gradients(phase, reals[part], real_c[part],
                                                   gen_z[phase_idx, part], gen_c[phase_idx, part],
                                                   gain=interval)
            for name, value in result.stats.items():
                run.tick_stats.add(name, value)
            w_means.extend(result.w_means)
            if result.real_signs is not None:
                real_signs.append(result.real_signs)
        params = [p for p in module.parameters() if p.requires_grad]
        dist_utils.sum_gradients_(params)
        for param in params:
            torch.nan_to_num_(param.grad, nan=0, posinf=1e5, neginf=-1e5)
        opt.step()
        module.requires_grad_(False)
        timings[phase] = timings.get(phase, 0.0) + (time.perf_counter() - start)
    _update_w_avg(run, w_means)

    # G_ema: exponential moving average of G's weights, ramped up early in training.
    ema_nimg = plan.ema_kimg * 1000
    if plan.ema_rampup is not None:
        ema_nimg = min(ema_nimg, counters.cur_nimg * plan.ema_rampup)
    ema_beta = 0.5 ** (plan.batch_size / max(ema_nimg, 1e-8))
    with torch.no_grad():
        # One fused launch per tensor list instead of one per parameter (~150 on a GPU).
        torch._foreach_lerp_(list(run.G_ema.parameters()), list(run.G.parameters()), 1 - ema_beta)
        torch._foreach_copy_(list(run.G_ema.buffers()), list(run.G.buffers()))

    counters.cur_nimg += plan.batch_size
    counters.batch_idx += 1
    if run.ada is not None:
        for signs in real_signs:
            run.ada.accumulate(signs)
        run.ada.step(reduce=dist_utils.all_reduce_sum_)

# ---- the loop -------------------------------------------------------------------------------

def _quiet_worker(worker_id: int) -> None:
    """Data workers leave stopping to the main process: a Ctrl-C (sent to the whole process
    group) or a SIGTERM to every process must not kill a worker mid-batch, which would turn a
    clean stop into a crash."""
    ignore_stop_signals()


def _data_iterator(run: _Run):
    options, plan = run.options, run.plan
    sampler = StepSampler(len(run.dataset), options.seed, plan.batch_size, run.group.rank,
                          run.group.world_size, start_step=run.counters.batch_idx)
    # More workers than cores only compete with training (and torch warns, twice); the
    # batches do not depend on the worker count.
    workers = min(options.workers, usable_cores())
    if workers < options.workers:
        log.info("data workers: %d (workers=%d, but this process may use %d core(s))", workers,
                 options.workers, usable_cores())
    loader = torch.utils.data.DataLoader(
        run.dataset, sampler=sampler, batch_size=plan.batch_per_gpu_step,
        num_workers=workers, pin_memory=run.device.type == "cuda",
        prefetch_factor=2 if workers > 0 else None,
        persistent_workers=workers > 0, worker_init_fn=_quiet_worker)
    return iter(loader)


def _grid_latents(run: _Run, count: int):
    """Fixed z/c for the snapshot grids, drawn without touching the training RNG."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn([count, run.G.z_dim], generator=gen)
    c = torch.zeros([count, run.G.c_dim])
    if run.G.c_dim > 0:
        idx = torch.randint(len(run.dataset), [count], generator=gen)
        c = torch.from_numpy(np.stack([run.dataset.get_label(int(i)) for i in idx]))
    return z, c


@torch.no_grad()
def _render_fakes(run: _Run, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    batch = max(run.plan.batch_gpu, 16)
    images = [run.G_ema(zb.to(run.device), cb.to(run.device), noise_mode="const").cpu()
              for zb, cb in zip(z.split(batch), c.split(batch))]
    return torch.cat(images)


def _write_reals_grid(run: _Run, reporter: Reporter, columns: int, rows: int) -> None:
    rnd = np.random.RandomState(0)
    count = min(columns * rows, len(run.dataset))
    indices = rnd.choice(len(run.dataset), size=count, replace=False)
    images = np.stack([run.dataset[int(i)][0] for i in indices]).transpose(0, 2, 3, 1)
    reporter.save_grid(images, columns, "reals.png")


def _write_options(run: _Run, run_dir: Path) -> None:
    plan = run.plan
    summary = {
        "options": run.options.to_dict(),
        "resolved": {
            "cfg": plan.preset.name, "total_kimg": plan.total_kimg, "batch_size": plan.batch_size,
            "batch_gpu": plan.batch_gpu, "num_gpus": plan.num_gpus, "gamma": plan.loss_gamma,
            "G_lrate": plan.G_lrate, "D_lrate": plan.D_lrate, "ema_kimg": plan.ema_kimg,
            "ema_rampup": plan.ema_rampup, "ada_target": plan.ada_target, "ada_kimg": plan.ada_kimg,
            "augment_p": plan.augment_p,
            "augpipe": run.options.augpipe_name, "G_kwargs": plan.G_kwargs, "D_kwargs": plan.D_kwargs,
            "dataset": {"path": run.dataset.path, "images": len(run.dataset),
                        "resolution": run.dataset.resolution, "channels": run.dataset.num_channels,
                        "label_dim": run.dataset.label_dim},
        },
    }
    text = json.dumps(summary, indent=2)
    write_text_atomically(run_dir / "training_options.json", text)


def _snapshot_metadata(run: _Run) -> dict:
    return {"kimg": run.counters.cur_nimg / 1000, "cfg": run.plan.preset.name,
            "dataset": run.dataset.path, "resolution": run.dataset.resolution,
            "training_set_kwargs": _training_set_kwargs(run), "options": run.options.to_dict()}


def _training_set_kwargs(run: _Run) -> dict:
    """The dataset as the reference's snapshots describe it: an exported pickle carries it, and
    the reference's calc_metrics.py measures against it when given no --data."""
    dataset, options = run.dataset, run.options
    kwargs = {"class_name": "training.dataset.ImageFolderDataset", "path": dataset.path,
              "use_labels": options.cond, "max_size": len(dataset) // (2 if dataset.xflip else 1),
              "xflip": options.mirror, "resolution": dataset.resolution}
    if options.subset is not None and options.subset < dataset.num_images:
        kwargs["random_seed"] = options.seed
    return kwargs


def _configure_backends(options: TrainingOptions) -> None:
    torch.backends.cudnn.benchmark = not options.nobench
    torch.backends.cuda.matmul.allow_tf32 = options.allow_tf32
    torch.backends.cudnn.allow_tf32 = options.allow_tf32


def train(options: TrainingOptions, *, stop_event: threading.Event | None = None,
          device: torch.device | None = None,
          group: dist_utils.ProcessGroupInfo = dist_utils.ProcessGroupInfo()) -> TrainingResult:
    """Trains until `kimg` in total or until `stop_event` is set; either way the state is saved.

    Call once per process; with several processes torch.distributed must be initialised.
    """
    from sg2_container.runtime import resolve_device

    start_time = time.time()
    device = device or resolve_device(options.device)
    _configure_backends(options)
    run_dir = Path(options.outdir)
    if options.resume is not None:
        resolve_resume_path(options.resume)  # a missing file fails now, not after the set-up
    if group.is_main:
        ckpt.prepare_directory(run_dir)  # a read-only folder fails here, before any work
    run = _build_run(options, device, group)
    plan, counters = run.plan, run.counters
    total_nimg = int(round(plan.total_kimg * 1000))

    # Before anything is written: a newer or differently-optioned checkpoint stops the job here.
    try:
        latest, refusal = ckpt.find_latest(run_dir, move_aside=group.is_main), None
    except UserError as error:  # every rank must hear it, or the others wait in the next
        latest, refusal = None, error  # collective forever
    _check_ranks_agree(latest, refusal, run_dir)
    if latest is not None:
        _restore(run, latest)
        counters = run.counters
        log.info("continuing from %s at kimg %.3f (tick %d)", latest.path.name,
                 counters.cur_nimg / 1000, counters.cur_tick)
    elif options.resume is not None:
        load_resume_weights(options.resume, run.G, run.D, run.G_ema)
    if group.is_main:
        _write_options(run, run_dir)

    last_checkpoint = latest.path if latest is not None else None
    if counters.cur_nimg >= total_nimg:
        log.info("nothing to train: the checkpoint in %s is at kimg %.3f, the run's length is "
                 "kimg=%g; exporting the final model", run_dir, counters.cur_nimg / 1000, plan.total_kimg)
        final = _export_final(run, run_dir) if group.is_main else None
        return TrainingResult(run_dir, counters.cur_nimg, True, False, final, last_checkpoint)

    metrics = snapshot_metrics(options, run_dir, device, group,  # None without --metrics
                               run.G_ema.img_resolution, data_fingerprint=run.meaning["dataset"],
                               stop_event=stop_event)
    reporter = Reporter(run_dir, enabled=group.is_main)  # after the checks: no event file before
    try:  # the event file is closed however the run ends
        columns, rows = grid_shape(run.dataset.resolution)
        grid_z, grid_c = _grid_latents(run, columns * rows)
        if group.is_main and counters.cur_nimg == 0:
            _write_reals_grid(run, reporter, columns, rows)
            reporter.save_grid(_render_fakes(run, grid_z, grid_c), columns, "fakes_init.png")

        data = _data_iterator(run)
        tick_start_time = time.time()
        maintenance_sec = tick_start_time - start_time
        timings: dict[str, float] = {}
        stopped = finished = False
        log.info("training %s for kimg=%g (batch %d = %d GPU(s) x %d round(s) x %d) into %s",
                 run.dataset.path, plan.total_kimg, plan.batch_size, plan.num_gpus, plan.num_rounds,
                 plan.batch_gpu, run_dir)
        while True:
            images, labels = next(data)
            _optimisation_step(run, images, labels, timings)
            finished = counters.cur_nimg >= total_nimg
            stopped = dist_utils.any_rank(stop_event is not None and stop_event.is_set(), group)
            tick_end = (finished or counters.cur_tick == 0 or
                        counters.cur_nimg >= counters.tick_start_nimg + options.kimg_per_tick * 1000)
            if not tick_end and not stopped:
                continue

            snapshot = tick_end and (finished or counters.cur_tick % options.snap == 0)
            if tick_end:
                _end_tick(run, reporter, timings, start_time=start_time,
                          tick_start_time=tick_start_time, maintenance_sec=maintenance_sec)

            maintenance_start = time.time()
            _check_finite(run, last_checkpoint)
            if snapshot or stopped:
                payload = _checkpoint_payload(run)
                if group.is_main:
                    last_checkpoint = ckpt.save_checkpoint(run_dir, payload, options.keep)
                    log.info("saved %s%s", last_checkpoint.name, " (stop requested)" if stopped else "")
            if snapshot and group.is_main:
                kimg = counters.cur_nimg // 1000
                save_model(run_dir / f"network-snapshot-{kimg:06d}.pt", G_ema=run.G_ema,
                           metadata=_snapshot_metadata(run))
                reporter.save_grid(_render_fakes(run, grid_z, grid_c), columns, f"fakes{kimg:06d}.png")
            if snapshot and metrics is not None and not stopped:  # every rank extracts a share
                # A stop during the evaluation ends it (and the run: the snapshot is saved).
                stopped = not metrics.run(
                    run.G_ema, f"network-snapshot-{counters.cur_nimg // 1000:06d}.pt",
                    counters.cur_nimg / 1000, reporter)
            if finished or stopped:
                break
            tick_start_time = time.time()
            maintenance_sec = tick_start_time - maintenance_start
    finally:
        reporter.close()
    final = _export_final(run, run_dir) if finished and group.is_main else None
    if stopped and not finished:
        log.info("stopped at kimg %.3f; run the same command again to continue", counters.cur_nimg / 1000)
    return TrainingResult(run_dir, counters.cur_nimg, finished, stopped and not finished, final,
                          last_checkpoint)


def _end_tick(run: _Run, reporter: Reporter, timings: dict, *, start_time: float,
              tick_start_time: float, maintenance_sec: float) -> None:
    """Reports the tick (status line, event file; statistics gathered from every rank) and
    starts the next one: counters advanced, statistics and timings emptied."""
    counters, device = run.counters, run.device
    if device.type == "cuda":  # the tick's queued GPU work belongs to the tick, not to the next
        torch.cuda.synchronize(device)
    tick_end_time = time.time()
    merged = TickStats()
    for part in dist_utils.all_gather_objects(run.tick_stats.state()):
        merged.merge(part)
    means = merged.means()
    gpu_mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    p = float(run.augment_pipe.p) if run.augment_pipe is not None else 0.0
    line = status_line(tick=counters.cur_tick, cur_nimg=counters.cur_nimg,
                       total_kimg=run.plan.total_kimg, total_sec=tick_end_time - start_time,
                       tick_sec=tick_end_time - tick_start_time,
                       tick_nimg=counters.cur_nimg - counters.tick_start_nimg,
                       maintenance_sec=maintenance_sec, augment_p=p, means=means,
                       gpu_mem_gib=gpu_mem)
    extra = {"Progress/tick": counters.cur_tick, "Progress/kimg": counters.cur_nimg / 1000,
             "Progress/augment": p, "Timing/total_sec": tick_end_time - start_time,
             "Timing/sec_per_tick": tick_end_time - tick_start_time,
             "Timing/maintenance_sec": maintenance_sec,
             **{f"Timing/{k}": v * 1000 for k, v in timings.items()}}
    reporter.tick(line, means, extra)
    run.tick_stats = TickStats()
    timings.clear()
    counters.cur_tick += 1
    counters.tick_start_nimg = counters.cur_nimg
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _export_final(run: _Run, run_dir: Path) -> Path:
    """The run's product: G, D and G_ema in our model format, with what made them."""
    path = save_model(run_dir / "network-final.pt", G_ema=run.G_ema, G=run.G, D=run.D,
                      metadata=_snapshot_metadata(run))
    log.info("final model: %s", path)
    return path
