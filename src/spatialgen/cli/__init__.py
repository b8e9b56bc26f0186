"""The ``spatialgen`` command line: one typer app, one module per area.

Heavy imports (torch, the renderer) happen inside commands, so ``spatialgen --help`` is instant.
"""

from __future__ import annotations

import typer

from .. import __version__
from ..logs import console, setup_logging
from .bias import bias
from .common import friendly_errors
from .curate import curate_command
from .demo import demo_command
from .evaluate import eval_app
from .generation import generate
from .intrinsics import intrinsics_app
from .scenes import scenes_app
from .train import train_app

app = typer.Typer(
    name="spatialgen",
    help="Spatially consistent text-to-image generation with latent diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(scenes_app, name="scenes")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(intrinsics_app, name="intrinsics")
app.command("generate")(generate)
app.command("bias")(bias)
app.command("curate")(curate_command)
app.command("demo")(demo_command)


def _version(value: bool) -> None:
    if value:
        console.print(f"spatialgen {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """Spatially consistent text-to-image generation with latent diffusion models."""
    setup_logging(verbose)


def main() -> None:
    app()


__all__ = ["app", "friendly_errors", "main"]
