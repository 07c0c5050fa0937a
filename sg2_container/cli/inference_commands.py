"""Inference commands: `sg2 generate`, `sg2 style-mix`, `sg2 interpolate`.

The rendering options come from the schema in inference/options.py (the batch job's requests
use the same fields); torch loads only inside the commands.
"""
from pathlib import Path

import click

from sg2_container.cli.errors import stops_cleanly, user_errors_as_click
from sg2_container.cli.network_option import network_option
from sg2_container.inference.options import GenerateOptions, InterpolateOptions, StyleMixOptions
from sg2_container.inference.progress import EVERY_S
from sg2_container.options.schema import click_options


def register(cli: click.Group) -> None:
    cli.add_command(generate)
    cli.add_command(style_mix)
    cli.add_command(interpolate)


def _common(command):
    """--network, --device and --outdir, shared by the rendering commands."""
    command = click.option("--outdir", required=True,
                           type=click.Path(file_okay=False, path_type=Path),
                           help="Folder for the output files (created if missing).")(command)
    command = click.option("--device", default="auto", show_default=True,
                           help="auto (the first GPU if there is one), cpu, cuda or cuda:N.")(command)
    return network_option(command)


def _progress_every(command):
    """A hidden --progress-every-s: the tests see a progress line without a 30 s run."""
    return click.option("--progress-every-s", "progress_every_s", default=EVERY_S, hidden=True,
                        type=click.FloatRange(min=0),
                        help="Seconds between progress lines (INFO; hidden by -q).")(command)


def _load(network_path, device, outdir):
    """The output folder first (one that cannot be made fails before the model loads), then
    the generator on its device."""
    from sg2_container.inference.model_source import load_generator
    from sg2_container.io.images import output_folder
    from sg2_container.runtime import resolve_device

    output_folder(outdir)
    torch_device = resolve_device(device)
    return load_generator(network_path, device=torch_device).G, torch_device


@click.command()
@_common
@_progress_every
@click_options(GenerateOptions)
def generate(network_path, device, outdir, progress_every_s, **values):
    """Render one PNG per seed (or per W vector of --projected-w) from G_ema.

    The same seed gives the same image as the reference's generate tool for the same weights,
    whatever --batch is.
    """
    with user_errors_as_click(GenerateOptions):
        from sg2_container.inference.generate import generate_to_folder

        options = GenerateOptions(**values)
        G, torch_device = _load(network_path, device, outdir)
        with stops_cleanly(doing="stopping after the current batch of images") as stop:
            written = generate_to_folder(G, options, outdir, torch_device, stop=stop,
                                         progress_every_s=progress_every_s)
        images = [p for p in written if p.suffix == ".png" and p.name != "grid.png"]
        click.echo(f"wrote {len(images)} image(s) to {outdir}")


@click.command("style-mix")
@_common
@click_options(StyleMixOptions)
def style_mix(network_path, device, outdir, **values):
    """Style-mixing grid: each row seed with the column seed's styles at --styles.

    Writes ROW-COL.png for every pair, SEED-SEED.png for every seed alone, and grid.png (top
    row: the column seeds, left column: the row seeds, black corner), as the reference does.
    """
    with user_errors_as_click(StyleMixOptions):
        from sg2_container.inference.style_mix import style_mix_to_folder

        options = StyleMixOptions(**values)
        G, torch_device = _load(network_path, device, outdir)
        with stops_cleanly(doing="stopping after the current batch of images") as stop:
            written = style_mix_to_folder(G, options, outdir, torch_device, stop=stop)
        click.echo(f"wrote {len(written) - 1} image(s) and {outdir / 'grid.png'}")


def _join_files(ctx, param, values):
    """--projected-w may repeat and/or hold comma-separated names."""
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


@click.command()
@_common
@_progress_every
@click_options(InterpolateOptions, exclude=("projected_w",))
@click.option("--projected-w", "projected_w", multiple=True, callback=_join_files, metavar="FILE",
              help="A W file to walk through after the seeds (a projection's projected_w.npz or "
                   "a `generate --save-w` file; each W vector in it is a key point); repeatable.")
def interpolate(network_path, device, outdir, progress_every_s, **values):
    """A walk through W between seeds and/or projected W vectors, as a video and a contact sheet.

    Key points: the --seeds in order, then the W vectors of each --projected-w file. Writes
    walk.mp4 (and/or walk.gif) and walk-sheet.png.
    """
    with user_errors_as_click(InterpolateOptions):
        from sg2_container.inference.interpolate import interpolate_to_folder

        options = InterpolateOptions(**values)
        G, torch_device = _load(network_path, device, outdir)
        with stops_cleanly(doing="stopping after the current frames; no partial video is "
                                 "kept") as stop:
            written = interpolate_to_folder(G, options, outdir, torch_device, stop=stop,
                                            progress_every_s=progress_every_s)
        click.echo("wrote " + ", ".join(str(p) for p in written))
