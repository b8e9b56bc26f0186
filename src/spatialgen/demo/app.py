"""The demo page: Gradio widgets wired to :mod:`spatialgen.demo.callbacks`.

One queue with one worker, so two visitors never run two torch jobs at once; progress comes from
the pipeline's step callback; a refused input is a readable message on the page (``gr.Error``).
Element ids (``#prompt``, ``#generate``, ``#gallery``, ``#maps``, ...) are what the browser test
drives.
"""

from __future__ import annotations

import os
from typing import Any

from .callbacks import (
    LOSS_CHOICES,
    MAX_IMAGES,
    METHOD_CHOICES,
    SAMPLER_CHOICES,
    SCHEDULE_CHOICES,
    DemoInputError,
    DemoModels,
    DemoRequest,
    compare,
    describe_prompt,
    draw_from_maps,
    generate,
    read_maps,
)

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


def build_app(models: DemoModels) -> Any:
    """The page's ``gr.Blocks`` for ``models`` (loaded lazily, once, on the first request that needs each)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    def on_generate(values: dict, progress=gr.Progress()):
        given = {field: values[component] for field, component in request_inputs.items()}
        request = DemoRequest(**{**given, "weight": given["weight"] or None, "lora": (given["lora"] or "").strip()})
        try:
            result = generate(request, models, on_step=lambda i, n: progress(i / n, desc=f"step {i} of {n}"))
        except (DemoInputError, ValueError, FileNotFoundError) as error:
            raise gr.Error(str(error)) from None
        return (
            [(for_display(im), c) for im, c in result.images],
            gr.update(value=[(for_display(im), c) for im, c in result.maps], visible=bool(result.maps)),
            gr.update(value=result.attention, visible=bool(result.attention)),
            result.files,
            result.notes,
        )

    def on_compare(prompt, seed, steps, mode):
        try:
            if not prompt or not prompt.strip():
                raise DemoInputError("Type a prompt to compare.")
            return [(for_display(im), c) for im, c in compare(prompt.strip(), int(seed), int(steps), models, mode)]
        except (DemoInputError, ValueError) as error:
            raise gr.Error(str(error)) from None

    with gr.Blocks(title="spatialgen") as app:
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
                lora = gr.Textbox(label="Spatial LoRA folder (train esplora)", value="")
                tore = gr.Checkbox(label="TORE: rephrase into the relation the model draws best", value=False)
                tore_tau = gr.Slider(0, 0.5, value=0.05, step=0.01, label="TORE tau")
                strict = gr.Checkbox(label="Strict: refuse words the model does not know", value=False)
            run = gr.Button("Generate", variant="primary", elem_id="generate")
            notes = gr.Markdown(elem_id="notes")
            gallery = gr.Gallery(
                label="Images", columns=4, height="auto", object_fit="contain", preview=False, elem_id="gallery"
            )
            maps = gr.Gallery(
                label="I-LDM: depth, normals, segmentation, lines",
                columns=4,
                height=300,
                object_fit="contain",
                preview=False,
                visible=False,
                elem_id="maps",
            )
            attention = gr.Gallery(
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
            )
        with gr.Tab("Compare"):
            c_prompt = gr.Textbox(label="Prompt", value=EXAMPLES[0], elem_id="compare-prompt")
            with gr.Row():
                c_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                c_steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
                c_mode = gr.Radio(["guidance", "schedules"], value="guidance", label="Compare")
            c_run = gr.Button("Compare", variant="primary", elem_id="compare")
            c_gallery = gr.Gallery(
                label="Side by side: recogniser boxes and VISOR's verdict", elem_id="compare-gallery"
            )
            c_run.click(on_compare, [c_prompt, c_seed, c_steps, c_mode], c_gallery)

        def on_read(image, seed, steps):
            try:
                return [(for_display(im), c) for im, c in read_maps(image, int(seed), int(steps), models)]
            except (DemoInputError, ValueError) as error:
                raise gr.Error(str(error)) from None

        def on_draw(prompt, depth, segmentation, seed, steps, count):
            try:
                result = draw_from_maps(prompt, depth, segmentation, int(seed), int(steps), int(count), models)
            except (DemoInputError, ValueError) as error:
                raise gr.Error(str(error)) from None
            return [(for_display(im), c) for im, c in result.images], [(for_display(im), c) for im, c in result.maps]

        with gr.Tab("Read maps"):
            gr.Markdown("I-LDM reads the depth, normals, segmentation and lines of an image (its image held clean).")
            r_image = gr.Image(label="Image", type="pil", elem_id="read-image")
            with gr.Row():
                r_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                r_steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
            r_run = gr.Button("Read maps", variant="primary", elem_id="read")
            r_gallery = gr.Gallery(label="The image and its maps", columns=5, elem_id="read-gallery")
            r_run.click(on_read, [r_image, r_seed, r_steps], r_gallery)
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
            d_images = gr.Gallery(label="Images", columns=4, elem_id="draw-gallery")
            d_maps = gr.Gallery(label="The maps they follow (completed)", columns=4, elem_id="draw-maps")
            d_run.click(on_draw, [d_prompt, d_depth, d_seg, d_seed, d_steps, d_count], [d_images, d_maps])
    app.queue(default_concurrency_limit=1)
    return app


def serve(
    model: str = "embedded", device: str = "cpu", host: str = "127.0.0.1", port: int = 7860, block: bool = True
) -> Any:
    """Start the page on ``host:port``; returns the running app (``block=False``: the caller keeps control)."""
    models = DemoModels(model, device)
    models.generator("sd")  # load the default model before the first visitor, not during their click
    app = build_app(models)
    app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, show_error=True)
    return app
