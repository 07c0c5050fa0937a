"""`sg2 train`: the reference's option names, validated into TrainingOptions."""
import json
import signal
import threading

import click

from sg2_container.cli.errors import user_errors_as_click

from sg2_container.options import AUG_MODES, AUGPIPE_NAMES, CFG_NAMES


def register(cli: click.Group) -> None:
    cli.add_command(train)


def _metrics(ctx, param, value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    return tuple(n for n in names if n != "none")


@click.command(context_settings={"show_default": True})
@click.option("--data", required=True, type=click.Path(exists=True), help="Training data: a zip or folder from `sg2 prepare`.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoints, snapshots, grids, logs. Re-running the same command continues from its newest checkpoint.")
@click.option("--gpus", type=int, default=1, help="Processes (one per GPU; gloo processes on CPU). Power of two.")
@click.option("--snap", type=int, default=50, help="Checkpoint, snapshot and image grid every N ticks.")
@click.option("--metrics", default="none", callback=_metrics, help="Metrics per snapshot: 'none' (others need detector files).")
@click.option("--seed", type=int, default=0, help="Random seed (weights, data order, latents).")
@click.option("--cond", type=bool, default=False, help="Class-conditional training on dataset.json labels.")
@click.option("--subset", type=int, default=None, help="Train on a random subset of N images.")
@click.option("--mirror", type=bool, default=False, help="Add x-flipped copies of the images.")
@click.option("--cfg", type=click.Choice(CFG_NAMES), default="auto", help="Base configuration preset.")
@click.option("--gamma", type=float, default=None, help="R1 regularisation weight (preset value if omitted).")
@click.option("--kimg", type=float, default=None, help="Total training length in thousands of images (fractions allowed); counts across restarts.")
@click.option("--batch", type=int, default=None, help="Total batch size (preset value if omitted).")
@click.option("--batch-gpu", type=int, default=None, help="Images per GPU per accumulation round (memory control).")
@click.option("--aug", type=click.Choice(AUG_MODES), default="ada", help="Augmentation mode.")
@click.option("--p", type=float, default=None, help="Augmentation probability for --aug=fixed.")
@click.option("--target", type=float, default=None, help="ADA target for --aug=ada (0.6 if omitted).")
@click.option("--augpipe", type=click.Choice(AUGPIPE_NAMES), default=None, help="Augmentation pipeline (bgc if omitted).")
@click.option("--resume", default=None, help="Start from these weights: a model file, a network pickle, or a published name (file supplied).")
@click.option("--freezed", type=int, default=0, help="Freeze-D: number of discriminator layers to freeze.")
@click.option("--fp32", type=bool, default=False, help="Disable mixed precision (fp16 top blocks) and clamping.")
@click.option("--nhwc", type=bool, default=False, help="Channels-last memory format for the fp16 blocks.")
@click.option("--nobench", type=bool, default=False, help="Disable cuDNN benchmarking.")
@click.option("--allow-tf32", type=bool, default=False, help="Allow TF32 for matmul and convolutions.")
@click.option("--workers", type=int, default=3, help="Data-loading worker processes (0: load in the main process).")
@click.option("--cbase", type=int, default=None, help="Override channel base (smaller = faster, for experiments).")
@click.option("--cmax", type=int, default=None, help="Override the maximum channels per layer.")
@click.option("--map", type=int, default=None, help="Override the number of mapping layers.")
@click.option("--keep", type=int, default=3, help="Newest full checkpoints to keep.")
@click.option("--kimg-per-tick", type=float, default=4.0, help="Progress between status lines.")
@click.option("--device", default="auto", help="auto, cpu, cuda or cuda:N (single process).")
@click.option("-n", "--dry-run", is_flag=True, help="Print the resolved options and exit.")
def train(dry_run: bool, **values) -> None:
    """Train StyleGAN2-ADA on a dataset (the reference's train.py options).

    Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and exits; running the same
    command again continues exactly where it stopped.
    """
    with user_errors_as_click():
        from sg2_container.options import TrainingOptions

        options = TrainingOptions(**values)
        if dry_run:
            from sg2_container.data.dataset import ImageFolderDataset
            from sg2_container.options import make_plan
            import dataclasses

            dataset = ImageFolderDataset(options.data, use_labels=options.cond,
                                         max_size=options.subset, xflip=options.mirror)
            plan = make_plan(options, dataset.resolution, dataset.num_channels, dataset.label_dim)
            resolved = dataclasses.asdict(plan)
            click.echo(json.dumps({"options": options.to_dict(), "plan": resolved}, indent=2, default=str))
            return
        from sg2_container.training.launch import run_training

        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            result = run_training(options, stop_event=stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if result.stopped:
            click.echo(f"stopped at kimg {result.cur_nimg / 1000:.3f}; run the same command to continue")
        else:
            click.echo(f"done: kimg {result.cur_nimg / 1000:.3f}; final model {result.final_model}")
