"""``spatialgen demo``: the web page, served on this machine."""

from __future__ import annotations

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors


@friendly_errors
def demo_command(
    model: str = typer.Option("embedded", "--model", help="The base model: 'embedded', a folder or a hub id."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
) -> None:
    """Serve a page to try every method: images beside their intrinsics, guidance compared (needs spatialgen[demo])."""
    quiet_libraries()
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise ImportError("the demo needs Gradio: pip install 'spatialgen[demo]'") from error
    if not 0 < port < 65536:
        raise typer.BadParameter(f"--port must be between 1 and 65535, got {port}")
    from ..demo.app import serve

    console.print(f"spatialgen demo on http://{host}:{port} (Ctrl+C stops it)", highlight=False)
    serve(model, device, host, port, block=True)
