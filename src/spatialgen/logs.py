"""Logging through rich: one handler on the ``spatialgen`` logger, set up by the CLI."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    logger = logging.getLogger("spatialgen")
    logger.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
