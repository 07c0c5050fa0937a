"""Dataset commands: `sg2 prepare`, `sg2 dataset info`.

Only click, the standard library and the options modules are imported here: `sg2 prepare` must
start fast, and torch is never needed (Pillow and numpy load inside the commands). The prepare
options come from PrepareOptions' schema.
"""

from __future__ import annotations

from pathlib import Path

import click

from sg2_container.cli.errors import user_errors_as_click
from sg2_container.data.options import PrepareOptions
from sg2_container.errors import UserError
from sg2_container.options.schema import click_options
from sg2_container.options.sizes import MAX_RESOLUTION
from sg2_container.options.training import MIN_TRAINING_RESOLUTION


@click.command("prepare")
@click_options(PrepareOptions)
def prepare_command(**kwargs: object) -> None:
    """Turn a folder/zip/tar of images of any size and format into a training zip.

    Every file is either written (converted as needed: EXIF orientation, CMYK, palette,
    transparency, 16-bit, grayscale) or skipped with a reason (corrupt, truncated, not an
    image, too many pixels, ...). The counts go to prepare_report.json and a summary line.
    The output bytes do not depend on --workers.
    """
    from sg2_container.data.prepare import prepare
    from sg2_container.errors import Stopped
    from sg2_container.io.signals import stop_on_signals
    from sg2_container.sagemaker.jobs import EXIT_STOPPED

    with user_errors_as_click():
        options = PrepareOptions(**kwargs)  # type: ignore[arg-type]
        try:
            with stop_on_signals(doing="ending the workers, removing the partial output") as stop:
                report = prepare(options, stop=stop)
        except Stopped as stopped:
            click.echo(f"stopped: {stopped}", err=True)
            raise SystemExit(EXIT_STOPPED) from None
    click.echo(report.summary())


@click.group("dataset")
def dataset_group() -> None:
    """Inspect training datasets (a zip or folder written by `sg2 prepare`)."""


@dataset_group.command("info")
@click.argument("path", metavar="DATASET")
@click.option(
    "--grid",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG grid of sample images (evenly spread over the set) to this file.",
)
@click.option(
    "--grid-images",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="How many images the --grid shows at most.",
)
@click.option("--force", is_flag=True, help="Replace an existing --grid file.")
def info_command(path: str, grid: Path | None, grid_images: int, force: bool) -> None:
    """Check DATASET as training will read it; print count, resolution, channels and labels."""
    from sg2_container.data.dataset import ImageFolderDataset
    from sg2_container.data.grid import write_dataset_grid

    if grid is not None:  # before any work: a grid written over a file destroys it
        if grid.suffix.lower() != ".png":
            raise click.ClickException(f"--grid {grid}: the grid is a PNG; name a .png file")
        if Path(path).resolve() in (grid.resolve(), *grid.resolve().parents):
            raise click.ClickException(f"--grid {grid} lies in the dataset {path}: the grid "
                                       "would become one of its images; write it elsewhere")
        if grid.exists() and not force:
            raise click.ClickException(f"--grid {grid} exists; give --force to replace it")
    try:
        dataset = ImageFolderDataset(path)
        click.echo(f"dataset: {path}")
        click.echo(f"images: {len(dataset)}")
        click.echo(f"resolution: {dataset.resolution}x{dataset.resolution}")
        click.echo(
            f"channels: {dataset.num_channels} ({'RGB' if dataset.num_channels == 3 else 'gray'})"
        )
        counts = dataset.class_counts()
        if counts is not None:
            per_class = ", ".join(f"{i}: {n}" for i, n in enumerate(counts))
            click.echo(
                f"labels: {len(counts)} classes (one-hot, label_dim {len(counts)}); "
                f"images per class {per_class}"
            )
        elif dataset.raw_label_dim:
            dim = dataset.raw_label_dim
            click.echo(f"labels: vectors of {dim} numbers (label_dim {dim})")
        elif dataset.label_error:
            click.echo(f"labels: unusable ({dataset.label_error})")
        else:
            click.echo("labels: none")
        if grid is not None:
            shown = write_dataset_grid(dataset, grid, grid_images)
            click.echo(f"grid: {grid} ({shown} images)")
    except UserError as e:
        raise click.ClickException(str(e)) from e


@dataset_group.command("synthetic")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--count", type=click.IntRange(min=1), default=256, show_default=True,
              help="Number of images.")
@click.option("--resolution", type=int, default=64, show_default=True,
              help="Image size in pixels (raw uploads vary between 1x and 2x of it): 4 to "
                   f"{MAX_RESOLUTION}; a power of two from {MIN_TRAINING_RESOLUTION} with "
                   "--format zip.")
@click.option("--format", "layout", type=click.Choice(["uploads", "zip"]), default="uploads",
              show_default=True,
              help="uploads: a folder of JPEGs of mixed sizes, one sub-folder per class (input "
                   "for `sg2 prepare`); zip: a ready training zip at exactly --resolution.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same images.")
@click.option("--force", is_flag=True, help="Replace an existing zip (--format zip).")
def synthetic_command(dest: Path, count: int, resolution: int, layout: str, seed: int,
                      force: bool) -> None:
    """Make a procedural dataset (coloured shapes on gradients) for trying things out; no
    downloads. Classes: circle, square, triangle."""
    from sg2_container.data.synthetic import (
        check_resolution,
        write_synthetic_dataset,
        write_synthetic_folder,
    )
    from sg2_container.io.images import output_folder

    with user_errors_as_click():
        check_resolution(resolution, layout)
        if layout == "zip" and dest.exists() and not (force and dest.is_file()):
            raise click.ClickException(
                f"{dest} exists" + ("; give --force to replace it" if dest.is_file() else
                                     " and is not a file"))
        output_folder(dest.parent if layout == "zip" else dest)  # refused by name, up front
        if layout == "zip":
            write_synthetic_dataset(dest, count, resolution, seed)
        else:
            write_synthetic_folder(dest, count, resolution, seed)
    click.echo(f"wrote {count} images to {dest}")


def register(cli: click.Group) -> None:
    """Adds the dataset commands to the `sg2` group."""
    cli.add_command(prepare_command)
    cli.add_command(dataset_group)
