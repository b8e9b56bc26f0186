"""The demo page: Gradio widgets wired to :mod:`spatialgen.demo.callbacks`.

One bounded queue and one torch worker shared by every tab, so two visitors never run two torch
jobs at once; progress comes from the pipeline's step callback; a refused input is a readable
message on the page (``gr.Error``), and anything unexpected is one generic sentence there and the
whole trace in the server's log. Gradio's file cache expires; a visitor never names a server path
(spatial LoRAs are the operator's list, by name).
Element ids (``#prompt``, ``#generate``, ``#gallery``, ``#maps``, ...) are what the browser test
drives.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from .callbacks import (
    LOSS_CHOICES,
    MAX_IMAGES,
    METHOD_CHOICES,
    NO_LORA,
    SAMPLER_CHOICES,
    SCHEDULE_CHOICES,
    DemoInputError,
    DemoModels,
    DemoRequest,
    check_prompt_length,
    compare,
    describe_prompt,
    draw_from_maps,
    generate,
    read_maps,
)

logger = logging.getLogger("spatialgen.demo")

#: What a visitor reads when something other than their input went wrong (the trace goes to the log).
UNEXPECTED_ERROR = "Something went wrong on the server; try again, or tell whoever runs this page."
#: Gradio's cache of result files: swept every CACHE_SWEEP seconds of files older than CACHE_AGE.
CACHE_SWEEP, CACHE_AGE = 600, 3600

EXAMPLES = [
    "a red cube to the left of a blue sphere",
    "a yellow cylinder above a green cone",
    "a purple sphere in front of a gray cube",
]


def for_display(image: Any, side: int = 256) -> Any:
    """A small image enlarged with crisp pixels for the page (downloads keep the real pixels)."""
    from PIL import Image

    if max(image.size) >= side:
        return image
    factor = max(1, side // max(image.size))
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


#: Every button that runs a model joins one concurrency group of size 1: the tabs share pipelines
#: (Generate, Read maps and From maps all use the I-LDM), and Gradio's per-event default limit
#: alone would let two tabs run torch on the same pipeline at once.
ONE_TORCH_JOB: dict[str, Any] = {"concurrency_id": "torch", "concurrency_limit": 1}
#: Visitors waiting in the queue at most; the next one is told the page is busy instead of waiting forever.
MAX_WAITING = 16


def page_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A page handler whose refusals show as their sentence and whose failures show as :data:`UNEXPECTED_ERROR`.

    Only :class:`DemoInputError` text reaches the visitor: it was written for them. Any other
    exception may carry a server path or a library's internals, so the visitor gets one generic
    sentence and the operator the trace, in the log.
    """
    import gradio as gr

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except DemoInputError as error:
            raise gr.Error(str(error)) from None
        except gr.Error:
            raise
        except Exception:
            logger.exception("demo request failed in %s", handler.__name__)
            raise gr.Error(UNEXPECTED_ERROR) from None

    return wrapped


def whole(value: Any, what: str) -> int:
    """A number box's value as an int, refused in words when empty or not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DemoInputError(f"{what} must be a whole number.") from None


def build_app(models: DemoModels) -> Any:
    """The page's ``gr.Blocks`` for ``models`` (loaded lazily, once, on the first request that needs each)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    @page_errors
    def on_generate(values: dict, progress=gr.Progress()):
        given = {field: values[component] for field, component in request_inputs.items()}
        request = DemoRequest(**{**given, "weight": given["weight"] or None, "lora": given["lora"] or ""})
        result = generate(request, models, on_step=lambda i, n: progress(i / n, desc=f"step {i} of {n}"))
        return (
            [(for_display(im), c) for im, c in result.images],
            gr.update(value=[(for_display(im), c) for im, c in result.maps], visible=bool(result.maps)),
            gr.update(value=result.attention, visible=bool(result.attention)),
            result.files,
            result.notes,
        )

    @page_errors
    def on_compare(prompt, seed, steps, mode):
        if not prompt or not prompt.strip():
            raise DemoInputError("Type a prompt to compare.")
        check_prompt_length(prompt)
        shown = compare(prompt.strip(), whole(seed, "The seed"), whole(steps, "Steps"), models, mode)
        return [(for_display(im), c) for im, c in shown]

    with gr.Blocks(title="spatialgen", delete_cache=(CACHE_SWEEP, CACHE_AGE)) as app:
        gr.Markdown(
            f"# spatialgen\nSpatially consistent text-to-image on **{models.model}**: Stable Diffusion, "
            "I-LDM (the image with its depth, normals, segmentation and lines), InfSplign (spatial guidance)."
        )
        with gr.Tab("Generate"):
            prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], elem_id="prompt")
            info = gr.Markdown(elem_id="prompt-info")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
                guidance = gr.Slider(0, 15, value=7.5, step=0.5, label="Guidance (CFG)")
                sampler = gr.Dropdown(list(SAMPLER_CHOICES), value="ddim", label="Sampler")
                images = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
            method = gr.Radio(list(METHOD_CHOICES), value="Stable Diffusion", label="Method", elem_id="method")
            with gr.Accordion("I-LDM", open=False):
                schedule = gr.Dropdown(list(SCHEDULE_CHOICES), value="drop", label="Cross-domain schedule")
                tau = gr.Slider(0, 1000, value=900, step=10, label="Drop: tau (timestep)")
                with gr.Row():
                    g_alpha = gr.Slider(0, 2, value=1.0, step=0.1, label="Gaussian: peak weight")
                    g_tau = gr.Slider(0, 1000, value=800, step=10, label="Gaussian: peak timestep")
                    g_sigma = gr.Slider(10, 500, value=100, step=10, label="Gaussian: width")
            with gr.Accordion("InfSplign", open=False):
                loss = gr.Dropdown(list(LOSS_CHOICES), value="sigmoid", label="Loss")
                weight = gr.Number(label="Weight (0: the model card's)", value=0)
                fraction = gr.Slider(0.05, 1.0, value=0.25, step=0.05, label="Guided fraction of the steps")
                presence = gr.Checkbox(label="Object presence term", value=False)
            with gr.Accordion("Spatial LoRA and TORE", open=False):
                lora = gr.Dropdown(
                    models.lora_choices(),
                    value=NO_LORA,
                    label="Spatial LoRA (the ones this page's operator offers: spatialgen demo --lora DIR)",
                    elem_id="lora",
                )
                tore = gr.Checkbox(label="TORE: rephrase into the relation the model draws best", value=False)
                tore_tau = gr.Slider(0, 0.5, value=0.05, step=0.01, label="TORE tau")
                strict = gr.Checkbox(label="Strict: refuse words the model does not know", value=False)
            run = gr.Button("Generate", variant="primary", elem_id="generate")
            notes = gr.Markdown(elem_id="notes")
            gallery = gr.Gallery(
                format="png",
                label="Images",
                columns=4,
                height="auto",
                object_fit="contain",
                preview=False,
                elem_id="gallery",
            )
            maps = gr.Gallery(
                format="png",
                label="I-LDM: depth, normals, segmentation, lines",
                columns=4,
                height=300,
                object_fit="contain",
                preview=False,
                visible=False,
                elem_id="maps",
            )
            attention = gr.Gallery(
                format="png",
                label="InfSplign: attention and centroids",
                columns=2,
                height=300,
                object_fit="contain",
                preview=False,
                visible=False,
                elem_id="attention",
            )
            files = gr.File(label="Downloads (PNG + JSON sidecar)", file_count="multiple", elem_id="files")
            gr.Examples(EXAMPLES, inputs=prompt)
            prompt.change(lambda p: describe_prompt(p, models), prompt, info)
            app.load(lambda p: describe_prompt(p, models), prompt, info)
            request_inputs = {  # DemoRequest's fields and the components that set them
                "prompt": prompt,
                "seed": seed,
                "steps": steps,
                "guidance": guidance,
                "sampler": sampler,
                "images": images,
                "method": method,
                "schedule": schedule,
                "tau": tau,
                "gaussian_alpha": g_alpha,
                "gaussian_tau": g_tau,
                "gaussian_sigma": g_sigma,
                "loss": loss,
                "weight": weight,
                "guide_fraction": fraction,
                "presence": presence,
                "lora": lora,
                "tore": tore,
                "tore_tau": tore_tau,
                "strict": strict,
            }
            run.click(
                on_generate,
                set(request_inputs.values()),  # one dict argument, by component
                [gallery, maps, attention, files, notes],
                api_name="generate",
                **ONE_TORCH_JOB,
            )
        with gr.Tab("Compare"):
            c_prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], elem_id="compare-prompt")
            with gr.Row():
                c_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                c_steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
                c_mode = gr.Radio(["guidance", "schedules"], value="guidance", label="Compare")
            c_run = gr.Button("Compare", variant="primary", elem_id="compare")
            c_gallery = gr.Gallery(
                format="png", label="Side by side: recogniser boxes and VISOR's verdict", elem_id="compare-gallery"
            )
            c_run.click(on_compare, [c_prompt, c_seed, c_steps, c_mode], c_gallery, api_name="compare", **ONE_TORCH_JOB)

        @page_errors
        def on_read(image, seed, steps):
            read = read_maps(image, whole(seed, "The seed"), whole(steps, "Steps"), models)
            return [(for_display(im), c) for im, c in read]

        @page_errors
        def on_draw(prompt, depth, segmentation, seed, steps, count):
            seed, steps, count = whole(seed, "The seed"), whole(steps, "Steps"), whole(count, "Images")
            result = draw_from_maps(prompt, depth, segmentation, seed, steps, count, models)
            return [(for_display(im), c) for im, c in result.images], [(for_display(im), c) for im, c in result.maps]

        with gr.Tab("Read maps"):
            gr.Markdown("I-LDM reads the depth, normals, segmentation and lines of an image (its image held clean).")
            r_image = gr.Image(label="Image", type="pil", elem_id="read-image")
            with gr.Row():
                r_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                r_steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
            r_run = gr.Button("Read maps", variant="primary", elem_id="read")
            r_gallery = gr.Gallery(format="png", label="The image and its maps", columns=5, elem_id="read-gallery")
            r_run.click(on_read, [r_image, r_seed, r_steps], r_gallery, api_name="read_maps", **ONE_TORCH_JOB)
        with gr.Tab("From maps"):
            gr.Markdown(
                "I-LDM draws images that follow a depth map (grey, near = bright) and, optionally, a segmentation "
                "coloured with the project's palette (the maps held clean)."
            )
            d_prompt = gr.Textbox(
                label="Prompt", value="a red cube and a blue sphere on the grass", elem_id="draw-prompt"
            )
            with gr.Row():
                d_depth = gr.Image(label="Depth", type="pil", elem_id="draw-depth")
                d_seg = gr.Image(label="Segmentation (optional)", type="pil", elem_id="draw-segmentation")
            with gr.Row():
                d_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                d_steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
                d_count = gr.Slider(1, MAX_IMAGES, value=2, step=1, label="Images")
            d_run = gr.Button("Draw", variant="primary", elem_id="draw")
            d_images = gr.Gallery(format="png", label="Images", columns=4, elem_id="draw-gallery")
            d_maps = gr.Gallery(format="png", label="The maps they follow (completed)", columns=4, elem_id="draw-maps")
            d_run.click(
                on_draw,
                [d_prompt, d_depth, d_seg, d_seed, d_steps, d_count],
                [d_images, d_maps],
                api_name="draw",
                **ONE_TORCH_JOB,
            )
    app.queue(default_concurrency_limit=1, max_size=MAX_WAITING)
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Refuse, in words, a port another program holds (Gradio's own error names neither)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ValueError(f"port {port} on {host} is not available ({error.strerror}); pass --port N") from None


def serve(
    model: str = "embedded",
    device: str = "cpu",
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    loras: Sequence[str] = (),
    auth: tuple[str, str] | None = None,
) -> Any:
    """Start the page on ``host:port``; returns the running app (``block=False``: the caller keeps control).

    ``loras`` are the spatial LoRA folders visitors may choose from; ``auth`` (user, password)
    asks every visitor to log in first.
    """
    check_port_free(host, port)
    models = DemoModels(model, device, loras)
    models.generator("sd")  # load the default model before the first visitor, not during their click
    app = build_app(models)
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        prevent_thread_lock=not block,
        show_error=False,  # page_errors decides what a visitor reads
        auth=auth,
    )
    return app
