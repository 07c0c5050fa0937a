"""The training checkpoint: its schema, its versions, and the rules that keep a resume from
destroying progress. The loop hands this module named live parts and gets them back; nothing
else reads or writes the checkpoint's keys.

A checkpoint is one torch.save zip, loadable with torch.load(weights_only=True), holding a dict
with constant keys (format_version 2; docs/checkpoints.md):
  format, format_version, created_by
  G, D, G_ema          state dicts (CPU)
  G_kwargs, D_kwargs   constructor kwargs of the networks
  opt_G, opt_D         optimizer state dicts
  augment              {"p": augmentation probability or None}
  loop                 progress counters, the latent generator's state and the world size
  ranks                one entry per process: its RNG states, pl_mean, tick stats, ADA sums
  options              the TrainingOptions that wrote it (to_dict)
  run                  what the run means: resolved options and the dataset's fingerprint
Files are named by progress (cur_nimg), so lexical order is chronological.

Resume rules: a newer format_version stops the job (never skipped, never overwritten); a file
that cannot be read is moved to corrupt/ (never deleted); a different run meaning stops the job
unless allow_changed_options; non-finite networks are never saved.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import math
from pathlib import Path
from typing import Callable

import torch

from sg2_container import __version__
from sg2_container.errors import UserError
from sg2_container.io.atomic import remove_stale_temp_files, write_atomically
from sg2_container.models.files import CHECKPOINT_MARKER, CHECKPOINT_NAME, check_zip_crcs
from sg2_container.models.state import cpu_state_dict, load_state_checked
from sg2_container.options import TrainingOptions, TrainingPlan, make_plan
from sg2_container.options.training import CHANGED_OPTIONS

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
CORRUPT_DIR = "corrupt"
NETWORKS = ("G", "D", "G_ema")
KEYS = ("format", "format_version", "created_by", *NETWORKS, "G_kwargs", "D_kwargs", "opt_G",
        "opt_D", "augment", "loop", "ranks", "options", "run")

# Options a resumed run may change without changing what the run is. They only extend the run
# (kimg), observe it (snap, metrics, kimg_per_tick), choose where or how fast it runs (device,
# gpus, batch_gpu, workers, nobench, allow_tf32, nhwc: the same arithmetic on another layout or
# split, not bit for bit), or name files (outdir, data: its content is compared instead;
# resume: only read when no checkpoint exists). A gpus or batch_gpu change that alters a derived
# value (cfg=auto derives batch and gamma from gpus) still shows up as that value's change.
# Every other TrainingOptions field changes the run's meaning and is compared (run_meaning).
FREE_TO_CHANGE = frozenset({
    "kimg", "snap", "keep", "workers", "metrics", "kimg_per_tick", "device", "outdir", "resume",
    "data", "nobench", "allow_tf32", "gpus", "batch_gpu", "nhwc", "allow_changed_options",
    "detector", "detector_torchscript", "metrics_images", "metrics_allow_small", "vgg16",
})
# Network kwargs that set only a memory layout (nhwc); ignored when comparing networks.
_LAYOUT_KWARGS = ("fp16_channels_last",)


class CheckpointTooNew(UserError):
    """A checkpoint written by a newer sg2-container: stop rather than lose its progress."""


class CheckpointUnreadable(UserError):
    """A damaged checkpoint (torn, bit-flipped, not ours, non-finite): moved aside, not used."""


class CheckpointNotWritable(UserError):
    """The run folder cannot take checkpoints (read-only, no permission, full)."""


class ChangedOptions(UserError):
    """The options of a resumed run differ from the checkpoint's in what the run means."""


class TrainingDiverged(UserError):
    """The networks became non-finite; nothing from that point on is saved."""


@dataclasses.dataclass
class LoopCounters:
    """Progress; everything else about a run derives from it and the options."""

    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    tick_start_nimg: int = 0


@dataclasses.dataclass(kw_only=True)
class TrainingParts:
    """The live objects of a run that a checkpoint saves and restores, by name."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    augment_pipe: torch.nn.Module | None
    latent_gen: torch.Generator


@dataclasses.dataclass(frozen=True, kw_only=True)
class RankState:
    """What each process keeps for itself; rank 0 saves one per process."""

    rng: dict
    pl_mean: float
    tick_stats: dict
    ada: dict | None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint, checked and upgraded to FORMAT_VERSION."""

    path: Path
    payload: dict

    def __getitem__(self, key: str):
        return self.payload[key]

    @property
    def counters(self) -> LoopCounters:
        loop = self.payload["loop"]
        return LoopCounters(**{f.name: int(loop[f.name]) for f in dataclasses.fields(LoopCounters)})

    @property
    def world_size(self) -> int:
        return int(self.payload["loop"]["world_size"])

    @property
    def ranks(self) -> list[RankState]:
        return [RankState(**r) for r in self.payload["ranks"]]

    def rank_state(self, rank: int, world_size: int) -> RankState | None:
        """This process's saved state, or None when the process count changed."""
        return self.ranks[rank] if world_size == self.world_size else None


# ---- names and folders ---------------------------------------------------------------------

def checkpoint_name(cur_nimg: int) -> str:
    return f"checkpoint-{cur_nimg:012d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Committed checkpoints (temp files of unfinished writes never match), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if CHECKPOINT_NAME.match(p.name))


def _not_writable(directory: Path, error: OSError) -> CheckpointNotWritable:
    reasons = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENOSPC: "no space left on the device",
               errno.EDQUOT: "disk quota exceeded"}
    reason = reasons.get(error.errno, error.strerror or type(error).__name__)
    return CheckpointNotWritable(
        f"cannot write checkpoints to {directory}: {reason} ({error.filename or directory}); "
        f"choose a writable outdir (--outdir / the 'outdir' hyperparameter) or free space")


def prepare_directory(directory: Path) -> None:
    """Creates the run folder, proves it writable, and deletes what writers killed mid-save
    left behind (on SageMaker it would be uploaded and downloaded again at every restart)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = write_atomically(directory / ".sg2-write-probe", lambda f: f.write(b"ok"))
        probe.unlink()
    except OSError as error:
        raise _not_writable(directory, error) from error
    remove_stale_temp_files(directory)


def _move_aside(path: Path, reason: str) -> Path:
    """Moves an unusable checkpoint into corrupt/, never over another file."""
    folder = path.parent / CORRUPT_DIR
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    suffix = 1
    while target.exists():
        target = folder / f"{path.stem}.{suffix}{path.suffix}"
        suffix += 1
    path.rename(target)
    count = sum(1 for p in folder.iterdir() if p.is_file())
    log.warning("moved unreadable checkpoint %s to %s/%s (%s); %d file(s) in %s/ now, kept for "
                "inspection, never used", path.name, CORRUPT_DIR, target.name, reason, count, CORRUPT_DIR)
    return target


# ---- what the run means -------------------------------------------------------------------

def run_meaning(options: TrainingOptions, plan: TrainingPlan, dataset_fingerprint: str | None) -> dict:
    """The values that make a run this run, under the option names a user knows, resolved
    (a preset's gamma counts as that number). Compared on resume."""
    synthesis = plan.G_kwargs["synthesis_kwargs"]
    return {
        "cfg": options.cfg, "batch": plan.batch_size, "gamma": plan.loss_gamma,
        "cbase": synthesis["channel_base"], "cmax": synthesis["channel_max"],
        "map": plan.G_kwargs["mapping_kwargs"]["num_layers"], "fp32": options.fp32,
        "seed": options.seed, "mirror": options.mirror, "cond": options.cond,
        "subset": options.subset, "freezed": options.freezed, "aug": options.aug,
        "augpipe": options.augpipe_name, "target": plan.ada_target, "p": plan.augment_p,
        # Derived from cfg, batch, gpus and the dataset: shown so a change is never silent.
        "lrate": plan.G_lrate, "ema_kimg": plan.ema_kimg,
        "mbstd_group": plan.D_kwargs["epilogue_kwargs"]["mbstd_group_size"],
        "dataset": dataset_fingerprint,
    }


def compared_options() -> set[str]:
    """TrainingOptions fields compared on resume (all but FREE_TO_CHANGE)."""
    return {f.name for f in dataclasses.fields(TrainingOptions)} - FREE_TO_CHANGE


def changed_options(checkpoint: Checkpoint, meaning: dict) -> list[str]:
    """'name: checkpoint value -> new value' for each difference in the run's meaning."""
    before = checkpoint["run"]
    changes = []
    for name, value in meaning.items():
        old = before.get(name)
        if name == "dataset":
            if old is None or value is None or old == value:
                continue  # a version-1 checkpoint has no fingerprint
            changes.append(f"dataset content: {old} -> {value} (other images or labels)")
        elif old != value:
            changes.append(f"{name}: {old!r} -> {value!r}")
    return changes


def shape_mismatch(checkpoint: Checkpoint, parts: TrainingParts) -> str | None:
    """The first tensor whose presence or shape differs between the checkpoint's networks and
    this run's (other cbase, cmax, map, labels or image size): None when every one fits."""
    for part in NETWORKS:
        saved = checkpoint[part]
        live = getattr(parts, part).state_dict()
        for name, tensor in live.items():
            old = saved.get(name)
            if old is None:
                return f"{part} tensor {name!r} is not in the checkpoint"
            if tuple(old.shape) != tuple(tensor.shape):
                return (f"{part} tensor {name!r} is {list(old.shape)} in the checkpoint and "
                        f"{list(tensor.shape)} in this run")
        extra = sorted(set(saved) - set(live))
        if extra:
            return f"the checkpoint's {part} tensor {extra[0]!r} has no place in this run"
    return None


def check_same_run(checkpoint: Checkpoint, meaning: dict, options: TrainingOptions,
                   mismatch: str | None = None) -> None:
    """Refuses a resume whose options change the run, unless the user accepts it on purpose;
    never when they change the networks' shapes (`mismatch`, from shape_mismatch), which no
    checkpoint can continue."""
    changes = changed_options(checkpoint, meaning)
    if not changes:
        return
    if mismatch is not None:
        raise ChangedOptions(
            f"{checkpoint.path.name} in {checkpoint.path.parent} {CHANGED_OPTIONS}: "
            f"{'; '.join(changes)}. These change the networks' shapes ({mismatch}), which no "
            "checkpoint can continue, even with allow_changed_options: run with the "
            "checkpoint's values, or use a new outdir for a new run")
    old_gpus = checkpoint["options"].get("gpus")
    hint = ""
    if old_gpus != options.gpus and options.cfg == "auto":
        hint = (f" (gpus {old_gpus} -> {options.gpus}: cfg=auto derives batch, gamma, ema_kimg "
                f"and mbstd_group from the GPU count; pass batch and gamma to keep them)")
    listing = "; ".join(changes)
    if options.allow_changed_options:
        log.warning("%s: continuing with changed options, as allow_changed_options asks: %s%s",
                    checkpoint.path.name, listing, hint)
        return
    raise ChangedOptions(
        f"{checkpoint.path.name} in {checkpoint.path.parent} {CHANGED_OPTIONS}: {listing}{hint}. "
        "Run with the checkpoint's values, use a new outdir for a new run, or accept the change "
        "on purpose with --allow-changed-options (hyperparameter allow_changed_options=true)")


# ---- writing --------------------------------------------------------------------------------

def capture(parts: TrainingParts, *, counters: LoopCounters, ranks: list[RankState],
            G_kwargs: dict, D_kwargs: dict, options: TrainingOptions, meaning: dict) -> dict:
    """The checkpoint payload of a run (rank 0 calls it with every rank's RankState)."""
    p = parts.augment_pipe
    return {
        "format": CHECKPOINT_MARKER, "format_version": FORMAT_VERSION,
        "created_by": f"sg2-container {__version__}",
        "G": cpu_state_dict(parts.G), "D": cpu_state_dict(parts.D),
        "G_ema": cpu_state_dict(parts.G_ema),
        "G_kwargs": G_kwargs, "D_kwargs": D_kwargs,
        "opt_G": parts.opt_G.state_dict(), "opt_D": parts.opt_D.state_dict(),
        "augment": {"p": float(p.p) if p is not None else None},
        "loop": {**dataclasses.asdict(counters), "latent_gen": parts.latent_gen.get_state(),
                 "world_size": len(ranks)},
        "ranks": [dataclasses.asdict(r) for r in ranks],
        "options": options.to_dict(),
        "run": dict(meaning),
    }


def non_finite_tensors(networks: dict[str, torch.nn.Module | dict]) -> list[str]:
    """'G: name' for the first non-finite tensor of each network (parameters and buffers)."""
    found = []
    for label, net in networks.items():
        state = net.state_dict() if isinstance(net, torch.nn.Module) else net
        floats = [(n, t) for n, t in state.items() if torch.is_floating_point(t)]
        if not floats:
            continue
        finite = torch.stack([torch.isfinite(t).all() for _, t in floats]).cpu()  # one sync
        if not bool(finite.all()):
            found.append(f"{label}: {floats[int((~finite).nonzero()[0])][0]}")
    return found


def diverged_error(kimg: float, bad: list[str], gamma: float, last: Path | None) -> TrainingDiverged:
    where = f"continue from {last.name} (the last finite checkpoint, kept)" if last else \
        "no checkpoint was written yet; start again"
    return TrainingDiverged(
        f"training diverged at kimg {kimg:.3f}: non-finite weights in {', '.join(bad)}; nothing "
        f"from this point was saved. Lower gamma (now {gamma:g}) or pick a preset with a lower "
        f"learning rate (cfg), then {where} with --allow-changed-options")


def save_checkpoint(directory: Path, payload: dict, keep: int) -> Path:
    """Writes the new checkpoint first, then prunes: the last good one is never deleted first.
    A payload with non-finite networks is refused, so no NaN checkpoint ever lands on disk."""
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    bad = non_finite_tensors({n: payload[n] for n in NETWORKS})
    if bad:
        raise diverged_error(payload["loop"]["cur_nimg"] / 1000, bad, payload["run"]["gamma"],
                             (list_checkpoints(directory) or [None])[-1])
    try:
        path = write_atomically(directory / checkpoint_name(payload["loop"]["cur_nimg"]),
                                lambda f: torch.save(payload, f))
    except OSError as error:
        raise _not_writable(directory, error) from error
    for old in list_checkpoints(directory)[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
            log.info("removed old checkpoint %s (keeping the newest %d)", old.name, keep)
    return path


# ---- reading --------------------------------------------------------------------------------

def _migrate_1_to_2(payload: dict) -> dict:
    """Version 1 spread per-process state over four lists and had no created_by or run."""
    loop = dict(payload["loop"])
    pl_means, tick_stats = loop.pop("pl_mean"), loop.pop("tick_stats")
    ada = payload["augment"].get("ada") or [None] * len(pl_means)
    ranks = [{"rng": rng, "pl_mean": float(pl), "tick_stats": stats, "ada": a}
             for rng, pl, stats, a in zip(payload["rng"], pl_means, tick_stats, ada)]
    G_kwargs = payload["G_kwargs"]
    options = TrainingOptions.from_dict(payload["options"])
    plan = make_plan(options, G_kwargs["img_resolution"], G_kwargs["img_channels"],
                     G_kwargs["c_dim"], num_gpus=int(loop["world_size"]))
    out = {k: v for k, v in payload.items() if k != "rng"}
    out.update(created_by="sg2-container (format_version 1)", loop=loop, ranks=ranks,
               augment={"p": payload["augment"]["p"]}, run=run_meaning(options, plan, None))
    return out


# Upgrades, applied in order: _MIGRATIONS[v] turns a version-v payload into version v + 1.
_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _migrate_1_to_2}


def load_checkpoint(path: Path) -> Checkpoint:
    """Loads, verifies (zip CRCs, marker, keys, finite networks) and upgrades one checkpoint.
    Raises CheckpointTooNew for a newer format and CheckpointUnreadable for anything damaged."""
    try:
        check_zip_crcs(path)
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged files
        raise CheckpointUnreadable(f"{path.name}: unreadable checkpoint ({type(error).__name__}: "
                                   f"{error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_MARKER:
        raise CheckpointUnreadable(f"{path.name}: not an sg2 training checkpoint")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointUnreadable(f"{path.name}: unknown format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointTooNew(
            f"{path} was written by a newer sg2-container (format_version {version}; this build "
            f"reads up to {FORMAT_VERSION}): upgrade sg2-container to continue this run. The file "
            f"was left untouched and nothing was written")
    try:
        while version < FORMAT_VERSION:
            payload = _MIGRATIONS[version](payload)
            version += 1
            payload["format_version"] = version
    except (KeyError, TypeError, ValueError, IndexError, UserError) as error:
        # The file is intact (CRCs match) but cannot be upgraded: stop, do not start over.
        raise UserError(f"{path}: cannot upgrade this format_version {version} checkpoint "
                        f"({type(error).__name__}: {error}); the file was left untouched. Continue "
                        f"it with the sg2-container that wrote it, or use a new outdir") from error
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise CheckpointUnreadable(f"{path.name}: checkpoint lacks {', '.join(missing)}")
    bad = non_finite_tensors({n: payload[n] for n in NETWORKS})
    if bad:
        raise CheckpointUnreadable(f"{path.name}: non-finite weights ({', '.join(bad)}), from a "
                                   f"run that diverged")
    return Checkpoint(path, payload)


def find_latest(directory: Path, *, move_aside: bool) -> Checkpoint | None:
    """The newest checkpoint that loads. Damaged newer ones are moved into corrupt/ when
    `move_aside` (the process that writes checkpoints), else skipped; a newer format stops."""
    moved = 0
    for path in reversed(list_checkpoints(directory)):
        try:
            found = load_checkpoint(path)
        except CheckpointUnreadable as error:
            if move_aside and path.exists():
                _move_aside(path, str(error))
                moved += 1
            else:
                log.warning("skipping checkpoint %s: %s", path.name, error)
            continue
        if moved:
            log.warning("%d unreadable checkpoint(s) moved to %s/; continuing from %s", moved,
                        CORRUPT_DIR, path.name)
        return found
    if moved:
        log.warning("%d unreadable checkpoint(s) moved to %s/ and none left: starting from the "
                    "beginning", moved, CORRUPT_DIR)
    return None


def _without_layout(kwargs):
    if isinstance(kwargs, dict):
        return {k: _without_layout(v) for k, v in kwargs.items() if k not in _LAYOUT_KWARGS}
    return kwargs


def _check_optimizer_fits(checkpoint: Checkpoint, part: str, optimizer: torch.optim.Optimizer,
                          D_kwargs: dict) -> None:
    """The saved optimizer state must cover the parameters this run trains: freezed makes the
    frozen D layers buffers, so another freezed leaves Adam's state without its parameters."""
    stored = [len(group["params"]) for group in checkpoint[f"opt_{part}"]["param_groups"]]
    live = [len(group["params"]) for group in optimizer.param_groups]
    if stored == live:
        return
    frozen = (checkpoint["D_kwargs"]["block_kwargs"].get("freeze_layers", 0),
              D_kwargs["block_kwargs"].get("freeze_layers", 0))
    why = (f" (freezed {frozen[0]} -> {frozen[1]} changes which D layers are trained)"
           if part == "D" and frozen[0] != frozen[1] else "")
    raise ChangedOptions(
        f"{checkpoint.path.name}: the {part} optimizer's state is for {sum(stored)} parameters, "
        f"this run trains {sum(live)}{why}; no checkpoint can continue with that change: keep "
        f"the checkpoint's value, or use a new outdir (with resume set to a model file of this "
        f"run to start from its weights)")


def restore(checkpoint: Checkpoint, parts: TrainingParts, G_kwargs: dict, D_kwargs: dict) -> None:
    """Loads the checkpoint's shared state into the live parts (per-rank state: rank_state)."""
    name = checkpoint.path.name
    for key, expected in (("G_kwargs", G_kwargs), ("D_kwargs", D_kwargs)):
        if _without_layout(checkpoint[key]) != _without_layout(expected):
            log.warning("%s: %s differ from this run's (%s vs %s)", name, key, checkpoint[key], expected)
    try:
        for part in NETWORKS:
            load_state_checked(getattr(parts, part), checkpoint[part], f"{name}: {part}")
    except UserError as error:
        raise ChangedOptions(f"{error}. The options change the networks' shapes, which no "
                             f"checkpoint can continue: use a new outdir") from error
    for part in ("G", "D"):
        _check_optimizer_fits(checkpoint, part, getattr(parts, f"opt_{part}"), D_kwargs)
    parts.opt_G.load_state_dict(checkpoint["opt_G"])
    parts.opt_D.load_state_dict(checkpoint["opt_D"])
    p = checkpoint["augment"]["p"]
    if parts.augment_pipe is not None and p is not None and math.isfinite(p):
        parts.augment_pipe.p.copy_(torch.as_tensor(p))
    parts.latent_gen.set_state(checkpoint["loop"]["latent_gen"])
