"""`sg2 metrics`: FID, KID, precision/recall, Inception score, PPL of a network file."""
import json

import click

from sg2_container.cli.errors import stops_cleanly, user_errors_as_click
from sg2_container.metrics.options import MetricsOptions
from sg2_container.options.schema import click_options


def register(cli: click.Group) -> None:
    cli.add_command(metrics)


@click.command()
@click_options(MetricsOptions)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record per metric (the "
              "fields of training's metric-<name>.jsonl lines, with `network` in place of the "
              "snapshot's fields) instead of `metric name=value` lines.")
def metrics(as_json: bool, **values) -> None:
    """Compute quality metrics of a generator against its dataset (docs/metrics.md).

    The detector weights are read from --detector or $SG2_DETECTOR, the VGG16 weights of the
    ppl* metrics from --vgg16 or $SG2_VGG16_WEIGHTS; nothing is downloaded.
    Dataset features are cached, so a second run on the same data only generates images.
    Each metric's line is printed as it finishes: Ctrl-C or SIGTERM stops the one being
    computed within a batch (exit 130) and keeps those printed.
    """
    with user_errors_as_click():
        from sg2_container.metrics.ondemand import run_metrics
        from sg2_container.options.metric_specs import result_line

        def report(record: dict) -> None:
            click.echo(json.dumps(record) if as_json else result_line(record["results"]))

        with stops_cleanly(doing="abandoning the metric being computed at the next batch; "
                                 "finished metrics are printed") as stop:
            run_metrics(MetricsOptions(**values), stop=stop, report=report)
