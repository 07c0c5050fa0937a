"""Model commands: `sg2 convert` (our model files <-> reference network pickles)."""
import logging
from pathlib import Path

import click

from sg2_container.cli.errors import user_errors_as_click

log = logging.getLogger(__name__)


def register(cli: click.Group) -> None:
    """Adds the model commands to the `sg2` group."""
    cli.add_command(convert)


# ---------------------------------------------------------------------------------------------
# sg2 convert: our model files <-> reference network pickles


@click.command()
@click.argument("src", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite DST if it already exists.")
def convert(src: Path, dst: Path, force: bool) -> None:
    """Convert a network pickle (.pkl) to an sg2 model file (.pt), or back.

    The direction follows what SRC holds, not its name. A reference network pickle
    (network-snapshot-*.pkl or a published pretrained file) is read without running any code
    from it and becomes an sg2 model file; DST must end in .pt. An sg2 model file becomes a
    pickle in the reference's snapshot layout; DST must end in .pkl. DST is written atomically.
    """
    with user_errors_as_click():
        from sg2_container.models import files, reference_pickle

        kind = files.sniff_kind(src)
        wanted = ".pt" if kind == "pickle" else ".pkl"
        if dst.suffix != wanted:
            what = "a network pickle" if kind == "pickle" else "an sg2 model file"
            raise click.UsageError(f"{src.name} is {what}, so DST must end in {wanted}: {dst}")
        if dst.resolve() == src.resolve():
            raise click.UsageError("SRC and DST are the same file")
        if dst.exists() and not force:
            raise click.UsageError(f"{dst} exists; pass --force to overwrite it")
        if not dst.parent.is_dir():
            raise click.UsageError(f"folder {dst.parent} does not exist")

        log.info("reading %s (%s)", src, "network pickle" if kind == "pickle" else "sg2 model")
        bundle = files.load_model(src)
        parts = [p for p in files.NETWORK_PARTS if getattr(bundle, p) is not None]
        log.info("writing %s (%s)", dst, ", ".join(parts))
        nets = {part: getattr(bundle, part) for part in parts}
        if kind == "pickle":
            files.save_model(dst, metadata=bundle.metadata, **nets)
        else:
            reference_pickle.save_reference_pickle(dst, metadata=bundle.metadata, **nets)
        click.echo(f"wrote {dst} ({', '.join(parts)})")
