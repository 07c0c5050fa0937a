"""`sg2 project`: find the W vectors of images (the reference projector, with our file safety).

torch loads inside the command; the options come from ProjectOptions' schema.
"""
from __future__ import annotations

from pathlib import Path

import click

from sg2_container.cli.errors import stops_cleanly, user_errors_as_click
from sg2_container.cli.network_option import network_option
from sg2_container.errors import UserError
from sg2_container.inference.project_options import ProjectOptions
from sg2_container.options.schema import click_options


@click.command("project")
@network_option
@click.option("--target", "targets", multiple=True, metavar="IMG",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Image to project (any format Pillow reads; converted as `sg2 prepare` "
                   "converts images, transparency onto white; centre-cropped to a square and "
                   "resized to the network's resolution). Repeat for several, or list them "
                   "after the options.")
@click.argument("more_targets", nargs=-1, metavar="[IMG]...",
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the results: one sub-folder per target, named after its file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click_options(ProjectOptions)
def project_command(network_path: str, targets: tuple[Path, ...], more_targets: tuple[Path, ...],
                    outdir: Path, device: str, **kwargs: object) -> None:
    """Project images into a generator's W space (G_ema), as the reference projector does.

    For each target writes OUTDIR/<name>/target.png (the cropped target), proj.png (the
    projection), projected_w.npz (key 'w', shape [1, num_ws, w_dim]; `sg2 generate
    --projected-w` renders it) and, with --save-video, proj.mp4.

    The distance is LPIPS on torchvision's ImageNet VGG16, whose weights are never downloaded:
    pass --vgg16 FILE or set SG2_VGG16_WEIGHTS (the container image does). Ctrl-C or SIGTERM
    stops between steps (exit 130); finished targets are kept, the current one is not written.
    """
    with user_errors_as_click(ProjectOptions):
        from sg2_container.inference.model_source import load_generator
        from sg2_container.inference.project import project_images
        from sg2_container.io.images import output_folder
        from sg2_container.runtime import resolve_device

        options = ProjectOptions(**kwargs)  # type: ignore[arg-type]
        all_targets = list(targets) + list(more_targets)
        if not all_targets:
            raise UserError("no target image: give --target IMG (repeat it for several)")
        output_folder(outdir)  # a folder that cannot be made fails before the model loads
        torch_device = resolve_device(device)
        G = load_generator(network_path, device=torch_device).G
        with stops_cleanly(doing="stopping the projection between steps") as stop:
            results = project_images(G, all_targets, outdir, options, device=torch_device,
                                     stop=stop)
        for result in results:
            click.echo(f"{result['target']}: distance {result['distance']:.4f} (start "
                       f"{result['start_distance']:.4f}) -> {result['folder']}")
        if results and results[0]["rehearsal"]:
            click.echo(f"NOTE: {results[0]['note']}", err=True)


def register(cli: click.Group) -> None:
    cli.add_command(project_command)
