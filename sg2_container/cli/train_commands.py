"""`sg2 train`: the reference's option names, generated from TrainingOptions' schema."""
import json

import click

from sg2_container.cli.errors import user_errors_as_click
from sg2_container.options import TrainingOptions
from sg2_container.options.schema import click_options


def register(cli: click.Group) -> None:
    cli.add_command(train)


@click.command()
@click_options(TrainingOptions)
@click.option("-n", "--dry-run", is_flag=True, help="Print the resolved options and exit.")
def train(dry_run: bool, **values) -> None:
    """Train StyleGAN2-ADA on a dataset (the reference's train.py options).

    Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and exits with code 130;
    running the same command again continues exactly where it stopped.
    """
    from sg2_container.data.dataset import check_batch_fits

    with user_errors_as_click():
        options = TrainingOptions(**values)
        check_batch_fits(options.data, options.batch, options.subset, options.mirror)
        if dry_run:
            import dataclasses

            from sg2_container.data.dataset import ImageFolderDataset
            from sg2_container.metrics.evaluate import check_names, locate_measuring_files
            from sg2_container.options import make_plan
            from sg2_container.training.launch import check_start

            check_start(options)
            locate_measuring_files(check_names(options.metrics), detector=options.detector,
                                   vgg16=options.vgg16)
            dataset = ImageFolderDataset(options.data, use_labels=options.cond,
                                         max_size=options.subset, xflip=options.mirror)
            plan = make_plan(options, dataset.resolution, dataset.num_channels, dataset.label_dim)
            resolved = dataclasses.asdict(plan)
            click.echo(json.dumps({"options": options.to_dict(), "plan": resolved}, indent=2,
                                  default=str))
            return
        from sg2_container.io.signals import stop_on_signals
        from sg2_container.sagemaker.jobs import EXIT_STOPPED
        from sg2_container.training.launch import run_training

        with stop_on_signals(doing="finishing the current step, saving a checkpoint") as stop:
            result = run_training(options, stop_event=stop)
        if result.stopped:
            click.echo(f"stopped at kimg {result.cur_nimg / 1000:.3f}; run the same command to "
                       "continue")
            raise SystemExit(EXIT_STOPPED)
        click.echo(f"done: kimg {result.cur_nimg / 1000:.3f}; final model {result.final_model}")
