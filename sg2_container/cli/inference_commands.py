"""Inference commands: `sg2 generate` (more arrive with the inference work)."""
from pathlib import Path

import click

from sg2_container.cli.errors import user_errors_as_click
from sg2_container.inference.seeds import DEFAULT_MAX_SEEDS


def register(cli: click.Group) -> None:
    cli.add_command(generate)


@click.command()
@click.option("--network", "network_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Model file: ours (.pt) or a reference network pickle (.pkl, read safely).")
@click.option("--seeds", default="0-7", show_default=True,
              help="Seeds to render: numbers and inclusive ranges, e.g. '0-7' or '1,5,10-12'.")
@click.option("--max-seeds", type=click.IntRange(min=1), default=DEFAULT_MAX_SEEDS,
              show_default=True, help="Refuse --seeds that ask for more images than this.")
@click.option("--trunc", "truncation_psi", type=float, default=1.0, show_default=True,
              help="Truncation psi: 1 = no truncation; lower trades variety for typicality.")
@click.option("--class", "class_idx", type=int, default=None,
              help="Class index, required for a conditional network.")
@click.option("--noise-mode", type=click.Choice(["const", "random", "none"]), default="const",
              show_default=True, help="Per-pixel noise: the model's stored maps, fresh, or none.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=None,
              help="Images rendered per forward pass [default: 8 on a GPU, 1 on a CPU, where "
                   "one at a time is fastest: the activations then stay in cache].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for seedNNNN.png files (created if missing).")
def generate(network_path, seeds, max_seeds, truncation_psi, class_idx, noise_mode, batch_size, device, outdir):
    """Render one PNG per seed from a generator (G_ema).

    The same seed gives the same image as the reference's generate tool for the same weights.
    """
    with user_errors_as_click():
        from sg2_container.inference.generate import GenerateOptions, generate_to_folder
        from sg2_container.inference.seeds import parse_seeds
        from sg2_container.models.files import load_model
        from sg2_container.runtime import resolve_device

        torch_device = resolve_device(device)
        if batch_size is None:
            batch_size = 8 if torch_device.type == "cuda" else 1
        options = GenerateOptions(seeds=tuple(parse_seeds(seeds, max_seeds)), truncation_psi=truncation_psi,
                                  noise_mode=noise_mode, class_idx=class_idx, batch_size=batch_size)
        bundle = load_model(network_path, device=torch_device)
        written = generate_to_folder(bundle.G_ema, options, outdir, torch_device)
        click.echo(f"wrote {len(written)} image(s) to {outdir}")
