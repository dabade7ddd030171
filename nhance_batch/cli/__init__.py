"""The ``nhance-batch`` command line: thin wrappers over the library, one module per command group.

Exit codes: 0 success, 1 some work failed, 2 usage or configuration errors. Quiet by default
(:mod:`nhance_batch.logs`); ``nhance-batch -v COMMAND`` shows every log line.
"""

from __future__ import annotations

import click

from nhance_batch import __version__
from nhance_batch.cli.bench import bench
from nhance_batch.cli.finetune import finetune
from nhance_batch.cli.compare import compare
from nhance_batch.cli.image import enhance_image
from nhance_batch.cli.models import models
from nhance_batch.cli.report import report
from nhance_batch.cli.plan import plan
from nhance_batch.cli.run import resume, run
from nhance_batch.cli.serve import serve
from nhance_batch.cli.status import status
from nhance_batch.cli.submit import submit


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="nhance-batch")
@click.option("-v", "--verbose", is_flag=True, envvar="NHANCE_VERBOSE",
              help="Show every log line: TensorFlow's, XLA's, CUDA's and Ray's too, in this "
                   "process and the enhancer workers (or NHANCE_VERBOSE=1). Without it only "
                   "the progress, the summary and warnings you can act on are shown.")
def cli(verbose: bool) -> None:
    """Enhance phone videos and photos with the DPED photo enhancer, on a laptop or a Ray cluster."""
    from nhance_batch import logs

    logs.configure(verbose)


cli.add_command(run)
cli.add_command(resume)
cli.add_command(status)
cli.add_command(submit)
cli.add_command(enhance_image)
cli.add_command(models)
cli.add_command(bench)
cli.add_command(serve)
cli.add_command(finetune)
cli.add_command(compare)
cli.add_command(report)
cli.add_command(plan)


def main() -> None:
    cli()
