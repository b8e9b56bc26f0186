"""Logging through rich: one handler on the ``spatialgen`` logger, set up by the CLI."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)
_verbose = False


def setup_logging(verbose: bool = False) -> None:
    logger = logging.getLogger("spatialgen")
    logger.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    global _verbose
    _verbose = verbose


def quiet_libraries() -> None:
    """Silence diffusers' and transformers' loading bars and notices (our own bars say what runs).

    Called by CLI commands that load models (importing diffusers costs seconds, so ``--help``
    must not); does nothing under ``--verbose``.
    """
    if _verbose:
        return
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    for module in (diffusers_logging, transformers_logging):
        module.set_verbosity_error()
        module.disable_progress_bar()
