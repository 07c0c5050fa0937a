"""`sg2 info`: what this installation is and runs on."""
import json

import click


def register(cli: click.Group) -> None:
    cli.add_command(info)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Show versions, devices, and which op implementation is active and why."""
    from sg2_container.runtime import environment_report

    report = environment_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, list):
            value = "; ".join(value)
        click.echo(f"{key:<{width}}  {value}")
