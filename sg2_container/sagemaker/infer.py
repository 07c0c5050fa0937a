"""`sg2-sagemaker infer`: batch inference as a processing job, with the article's layout.

The model arrives at /opt/ml/processing/model (the training job's model.tar.gz, or its
contents), the inputs at /opt/ml/processing/data (images to project and/or requests.jsonl),
and the results go to /opt/ml/processing/output/<name> with a manifest.json. This module only
maps that layout to plain paths; the work is inference/batch.py's `run_requests`.
"""
from __future__ import annotations

import dataclasses
import logging
import threading

from sg2_container.options.schema import option, parse_args, validate
from sg2_container.sagemaker import paths

log = logging.getLogger(__name__)

HELP = """Batch inference against a trained model, as a SageMaker processing job.

Every image in --data is projected into the model (the article's inference step), and each
line of --data/requests.jsonl is run: one JSON object naming its kind (generate, style_mix,
project, interpolate) with the fields of the matching sg2 command, e.g.
{"generate": {"seeds": [1, 2], "truncation_psi": 0.7}}. Results go to --output/--name, one
folder per request, and manifest.json lists every request with its status and files. SIGTERM
or SIGINT stops between requests (and between projection steps) with the manifest written
(exit 130). Paths under /opt/ml are moved under $SAGEMAKER_BASE_DIR when it is set.
"""


@dataclasses.dataclass(frozen=True, kw_only=True)
class InferJobOptions:
    """The job's own options; what to render comes from the data folder."""

    model: str = option("/opt/ml/processing/model", metavar="PATH", help=(
        "The model: a folder holding model.tar.gz or its contents (model.pt, or a network "
        ".pkl), or such a file itself; the model file is found by its content."))
    data: str = option("/opt/ml/processing/data", metavar="PATH", help=(
        "Folder with images to project and/or requests.jsonl."))
    output: str = option("/opt/ml/processing/output", metavar="PATH",
                         help="Folder of the job's processing output.")
    name: str = option("test", help="Sub-folder of --output for this run's results.")
    device: str = option("auto", help="auto (the first GPU if there is one), cpu, cuda or cuda:N.")
    num_steps: int = option(1000, min=1, max=100000, help=(
        "Optimisation steps of each projection (a request's own num_steps wins)."))
    save_video: bool = option(False, is_flag=True, help=(
        "Also write proj.mp4 per projected image (a request's own save_video wins)."))
    project_images: bool = option(True, help=(
        "Project the images of --data that no project request names (1/0)."))
    vgg16: str | None = option(None, metavar="FILE", default_text="$SG2_VGG16_WEIGHTS", help=(
        "torchvision's VGG16 ImageNet weights (vgg16-397923af.pth) for the projection distance."))
    allow_random_vgg16: bool = option(False, is_flag=True, help=(
        "Without VGG16 weights, project with a randomly initialised distance network: a "
        "rehearsal of the mechanics (said so in the log and manifest), not a meaningful "
        "projection."))

    def __post_init__(self) -> None:
        validate(self)
        from sg2_container.options.schema import fail

        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise fail("name", self.name, "a folder name (no '/')")


def run_infer(args: list[str], stop: threading.Event) -> None:
    """Parses the job's arguments, maps /opt/ml paths under the base dir, runs the requests."""
    from sg2_container.inference.batch import run_requests

    values = parse_args(InferJobOptions, args, "sg2-sagemaker infer", HELP)
    if values is None:  # --help was printed
        return
    options = InferJobOptions(**values)
    data = paths.translate(options.data)
    if not data.is_dir():
        from sg2_container.errors import UserError

        raise UserError(f"data={options.data!r}: no such folder; give the job a 'data' input "
                        "with images to project and/or requests.jsonl")
    outdir = paths.translate(options.output) / options.name
    run_requests(
        model=paths.translate(options.model),
        data=data,
        outdir=outdir,
        device=options.device,
        project_defaults={"num_steps": options.num_steps, "save_video": options.save_video,
                          "vgg16": None if options.vgg16 is None else str(paths.translate(options.vgg16)),
                          "allow_random_vgg16": options.allow_random_vgg16},
        project_data_images=options.project_images,
        stop=stop,
        progress=True,  # a log line every 30 s per projection: hours on a CPU otherwise silent
    )
    log.info("results in %s (manifest.json lists every request)", outdir)
