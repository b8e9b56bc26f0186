"""``spatialgen demo``: the web page, served on this machine."""

from __future__ import annotations

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """``user:password`` as Gradio's (user, password); None when not given."""
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise typer.BadParameter(f"--auth must be user:password (both non-empty), got {auth[:3]}...")
    return user, password


@friendly_errors
def demo_command(
    model: str = typer.Option("embedded", "--model", help="The base model: 'embedded', a folder or a hub id."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or mps."),
    lora: list[str] = typer.Option(
        [], "--lora", help="A spatial LoRA folder (train esplora) visitors may pick; repeat for several."
    ),
    auth: str | None = typer.Option(None, "--auth", help="user:password that every visitor must give."),
) -> None:
    """Serve a page to try every method: images beside their intrinsics, guidance compared (needs spatialgen[demo])."""
    quiet_libraries()
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise ImportError("the demo needs Gradio: pip install 'spatialgen[demo]'") from error
    if not 0 < port < 65536:
        raise typer.BadParameter(f"--port must be between 1 and 65535, got {port}")
    credentials = parse_auth(auth)
    from ..demo.app import is_loopback, serve

    if not is_loopback(host):
        console.print(
            f"warning: serving on {host}: anyone who can reach this address can run models on this machine"
            + ("" if credentials else "; pass --auth user:password to ask for a login"),
            style="yellow",
            highlight=False,
        )
    console.print(f"spatialgen demo on http://{host}:{port} (Ctrl+C stops it)", highlight=False)
    serve(model, device, host, port, block=True, loras=lora, auth=credentials)
