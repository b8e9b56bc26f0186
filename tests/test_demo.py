"""spatialgen demo: the callbacks without a browser, then the page itself in headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from spatialgen.demo import DemoInputError, DemoModels, DemoRequest, compare, describe_prompt, generate
from spatialgen.demo.callbacks import check_request


@pytest.fixture(scope="module")
def models() -> DemoModels:
    return DemoModels("embedded")


def test_bad_requests_say_what_to_change() -> None:
    for request, message in (
        (DemoRequest(prompt="  "), "Type a prompt"),
        (DemoRequest(prompt="a cube", steps=0), "Steps must be between 1 and"),
        (DemoRequest(prompt="a cube", images=9), "Number of images must be between 1 and 8"),
        (DemoRequest(prompt="a cube", method="DALL-E"), "choose one of Stable Diffusion, I-LDM"),
        (DemoRequest(prompt="a cube " * 100), "keep it to 500"),
    ):
        with pytest.raises(DemoInputError, match=message):
            check_request(request)


def test_spatial_loras_come_only_from_the_operators_list_and_the_cache_is_bounded(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    import spatialgen.esplora
    import spatialgen.generators
    from spatialgen.demo.callbacks import MAX_GENERATORS

    adapter = tmp_path / "left-right"
    adapter.mkdir()
    models = DemoModels("embedded", loras=[adapter, f"{adapter}/", f"{adapter}/./"])
    assert models.lora_choices() == ["none", "left-right", "left-right-2", "left-right-3"]
    assert len(set(models.loras.values())) == 1  # one resolved folder, however it was spelled
    for typed in ("/etc/passwd", "/etc", "/nonexistent/x", str(adapter)):  # a path is never a choice
        with pytest.raises(DemoInputError) as refused:
            models.generator("sd", typed)
        assert str(refused.value).startswith("Unknown spatial LoRA") and "pick one from the list" in str(refused.value)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        DemoModels("embedded", loras=[tmp_path / "missing"])

    loads: list[str] = []
    monkeypatch.setattr(spatialgen.generators, "load_generator", lambda m, *a, **k: SimpleNamespace(pipe=m))
    monkeypatch.setattr(spatialgen.esplora, "apply_spatial_lora", lambda pipe, folder, *a: loads.append(folder))
    many = DemoModels("embedded", loras=[adapter] * (MAX_GENERATORS + 2))
    names = many.lora_choices()[1:]
    first = many.generator("sd", names[0])
    for name in names[1:MAX_GENERATORS]:
        many.generator("sd", name)
    assert many.generator("sd", names[0]) is first  # a hit, now the most recently used
    many.generator("sd", names[MAX_GENERATORS])  # one more than fits: the least recently used goes
    assert len(many._generators) == MAX_GENERATORS and ("sd", names[1]) not in many._generators
    assert ("sd", names[0]) in many._generators and len(loads) == MAX_GENERATORS + 1


def test_long_prompts_are_refused_and_the_parser_is_linear_on_hostile_text(models: DemoModels) -> None:
    from spatialgen.triplets import parse_triplet

    assert "keep it to 500" in describe_prompt("x" * 501, models)
    started = time.perf_counter()
    assert parse_triplet(", left of" * 8000) is None  # 72 kB: took 6.2 s when the parser was quadratic
    assert time.perf_counter() - started < 1.0


def test_unexpected_errors_reach_the_log_and_the_visitor_reads_one_sentence(caplog) -> None:
    import gradio as gr

    from spatialgen.demo.app import UNEXPECTED_ERROR, page_errors

    @page_errors
    def broken() -> None:
        raise RuntimeError("/srv/secret/weights.bin: CUDA error 700")

    @page_errors
    def refused() -> None:
        raise DemoInputError("Upload an image first.")

    with pytest.raises(gr.Error) as shown:
        broken()
    assert shown.value.message == UNEXPECTED_ERROR and "/srv/secret" in caplog.text
    with pytest.raises(gr.Error) as shown:
        refused()
    assert shown.value.message == "Upload an image first."


def test_a_busy_port_is_named_and_a_network_host_is_warned_about() -> None:
    from typer.testing import CliRunner

    from spatialgen.cli import app as cli
    from spatialgen.cli.demo import parse_auth
    from spatialgen.demo.app import check_port_free, is_loopback

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(ValueError, match=f"port {port} on 127.0.0.1 is not available"):
            check_port_free("127.0.0.1", port)
        result = CliRunner().invoke(cli, ["demo", "--port", str(port)])
        assert result.exit_code != 0 and f"port {port}" in result.output and "Traceback" not in result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert parse_auth("ann:s3cret:x") == ("ann", "s3cret:x") and parse_auth(None) is None
    with pytest.raises(Exception, match="user:password"):
        parse_auth("ann")


def test_the_prompt_box_shows_the_triplet_and_unknown_words(models: DemoModels) -> None:
    text = describe_prompt("a red cube to the left of a blue sphere", models)
    assert "**a red cube** / *left of* / **a blue sphere**" in text or "left of" in text and "red cube" in text
    assert "No guidable relation" in describe_prompt("a red cube", models)
    assert "zeppelin" in describe_prompt("a red zeppelin left of a cube", models)
    with pytest.raises(DemoInputError, match="untick 'strict'"):
        generate(DemoRequest(prompt="a red zeppelin", steps=2, strict=True), models)


def test_ildm_shows_each_image_with_its_four_maps_and_files_to_download(models: DemoModels) -> None:
    steps_seen: list[tuple[int, int]] = []
    result = generate(
        DemoRequest(prompt="a red cube to the left of a blue sphere", steps=3, images=2, method="I-LDM"),
        models,
        on_step=lambda i, n: steps_seen.append((i, n)),
    )
    assert [caption for _, caption in result.images] == ["seed 0", "seed 1"]
    assert [caption.split(" ")[0] for _, caption in result.maps] == ["depth", "normal", "segmentation", "lines"] * 2
    assert steps_seen == [(1, 3), (2, 3), (3, 3)]  # the page's progress bar follows the sampler
    pngs, sidecars = [f for f in result.files if f.endswith(".png")], [f for f in result.files if f.endswith(".json")]
    assert len(pngs) == 2 + 2 * 4 and len(sidecars) == 2  # each image, its four maps, its sidecar
    again = generate(DemoRequest(prompt="a cube", steps=2, method="I-LDM"), models)
    assert models.generator("ildm") is models.generator("ildm") and len(again.images) == 1  # loaded once


def test_infsplign_shows_attention_and_compare_shows_verdicts(models: DemoModels) -> None:
    guided = generate(
        DemoRequest(prompt="a red cube to the left of a blue sphere", steps=4, method="InfSplign"), models
    )
    assert len(guided.attention) == 1 and guided.attention[0][0].width > guided.images[0][0].width
    unguided = generate(DemoRequest(prompt="a red cube", steps=2, method="InfSplign"), models)
    assert "without guidance" in unguided.notes
    pairs = compare("a red cube to the left of a blue sphere", 0, 3, models, "guidance")
    assert [c.split(":")[0] for _, c in pairs] == ["without guidance", "InfSplign"]
    assert all("VISOR" in c for _, c in pairs)


def _chromium() -> str | None:
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render_and_depth_files(folder: Path) -> tuple[Path, Path]:
    """A held-out render and its exact depth as the grey PNG the From maps tab takes (near = bright)."""
    from PIL import Image

    from spatialgen.scenes import make_sample, scene_seed
    from spatialgen.scenes.held_out import HELD_OUT_SEED

    sample = make_sample(scene_seed(HELD_OUT_SEED, 3), 64)
    render, depth = folder / "render.png", folder / "depth.png"
    Image.fromarray(sample.rgb).save(render)
    Image.fromarray((sample.intrinsics().depth[0] * 255).round().astype("uint8")).save(depth)
    return render, depth


@pytest.mark.skipif(_chromium() is None, reason="no Chromium: apt-get install chromium (.ci/run does)")
def test_the_page_generates_an_image_and_its_maps_in_a_real_browser(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from spatialgen.demo.app import serve

    port = _free_port()
    app = serve("embedded", host="127.0.0.1", port=port, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.wait_for_selector("#prompt-info:has-text('Triplet')", timeout=30_000)
            page.fill("#prompt textarea", "a red cube to the left of a blue sphere")
            page.get_by_label("I-LDM", exact=True).check()
            started = time.perf_counter()
            page.click("#generate")
            page.wait_for_selector("#gallery img", timeout=60_000)
            seconds = time.perf_counter() - started
            page.wait_for_function("document.querySelectorAll('#maps img').length >= 4", timeout=60_000)
            assert page.locator("#maps img").count() >= 4
            screenshot = Path(os.environ.get("SPATIALGEN_DEMO_SCREENSHOT", tmp_path / "demo.png"))
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            page.fill("#prompt textarea", "")
            page.click("#generate")
            page.wait_for_selector("text=Type a prompt first", timeout=30_000)  # an error on the page, no trace
            render, depth = _render_and_depth_files(tmp_path)
            page.get_by_role("tab", name="Read maps").click()
            page.click("#read")
            page.wait_for_selector("text=Upload an image first", timeout=30_000)
            page.set_input_files("#read-image input[type=file]", str(render))
            page.wait_for_selector("#read-image img", timeout=30_000)
            page.click("#read")  # the image and its depth, normals, segmentation and lines
            page.wait_for_function("document.querySelectorAll('#read-gallery img').length >= 5", timeout=60_000)
            page.get_by_role("tab", name="From maps").click()
            page.set_input_files("#draw-depth input[type=file]", str(depth))
            page.wait_for_selector("#draw-depth img", timeout=30_000)
            page.click("#draw")
            page.wait_for_function("document.querySelectorAll('#draw-gallery img').length >= 2", timeout=60_000)
            assert page.locator("#draw-maps img").count() >= 4  # the completed maps the images follow
            browser.close()
        assert seconds < 20  # generous for a loaded 2-core CI machine; benchmarks/demo.py measures it properly
    finally:
        app.close()


def test_schedule_parameters_reach_the_sampler(models: DemoModels) -> None:
    from spatialgen.demo.callbacks import _configured
    from spatialgen.ildm.schedules import DropSchedule, GaussianSchedule

    request = DemoRequest(prompt="a cube", method="I-LDM", schedule="gaussian", gaussian_tau=500, gaussian_sigma=50)
    assert _configured(models, request).schedule == GaussianSchedule(alpha=1.0, tau=500.0, sigma=50.0)
    assert _configured(models, DemoRequest(prompt="a cube", method="I-LDM", tau=700)).schedule == DropSchedule(
        tau=700.0
    )


def test_download_folders_are_capped_per_process(tmp_path: Path) -> None:
    from spatialgen.demo.callbacks import KEEP_GENERATIONS

    models = DemoModels("embedded")
    folders = []
    for _ in range(KEEP_GENERATIONS + 3):
        folder = models.output_folder()
        folder.mkdir()
        folders.append(folder)
    kept = sorted(p for p in folders[0].parent.iterdir() if p.is_dir())
    assert len(kept) == KEEP_GENERATIONS and kept[-1] == folders[-1] and not folders[0].exists()


def _tiny_models(tiny_pipe, trained_for: dict[str, float]) -> DemoModels:
    """Demo models whose I-LDM is a tiny random one with the given clean-domain training shares on its card."""
    from spatialgen.generators import as_generator
    from spatialgen.ildm.intrinsic_vae import widen_vae
    from spatialgen.ildm.pipeline import IntrinsicLDMPipeline
    from spatialgen.models.pipeline import set_model_card

    pipe = IntrinsicLDMPipeline.from_base(tiny_pipe, widen_vae(tiny_pipe.vae), rank=4)
    pipe.set_progress_bar_config(disable=True)
    set_model_card(pipe, {"training": trained_for})
    models = DemoModels("embedded")
    models._generators[("ildm", "")] = as_generator(pipe)
    return models


def test_read_maps_and_draw_from_maps(tiny_pipe) -> None:
    from PIL import Image

    from spatialgen.demo.callbacks import draw_from_maps, read_maps

    models = _tiny_models(tiny_pipe, {"p_image_clean": 0.2, "p_intrinsic_clean": 0.2})
    photo = Image.new("RGB", (50, 40), (200, 30, 30))
    shown = read_maps(photo, seed=0, steps=2, models=models)
    assert [c for _, c in shown] == ["image", "depth", "normal", "segmentation", "lines"]
    assert all(im.size == (50, 40) for im, _ in shown)  # maps come back at the upload's size
    depth = Image.linear_gradient("L").resize((40, 40))
    drawn = draw_from_maps("a red cube", depth, None, seed=3, steps=2, images=2, models=models)
    assert [c for _, c in drawn.images] == ["seed 3", "seed 4"] and len(drawn.maps) == 4
    with pytest.raises(DemoInputError, match="Upload a depth map"):
        draw_from_maps("a red cube", None, None, 0, 2, 1, models)
    with pytest.raises(DemoInputError, match="at most 16 MP"):
        read_maps(Image.new("RGB", (5000, 4000)), 0, 2, models)
    untrained = _tiny_models(tiny_pipe, {})
    with pytest.raises(DemoInputError, match="not trained to read images"):
        read_maps(photo, 0, 2, untrained)
    with pytest.raises(DemoInputError, match="not trained to follow given maps"):
        draw_from_maps("a red cube", depth, None, 0, 2, 1, untrained)


def test_every_model_button_shares_one_torch_worker_and_the_queue_is_bounded() -> None:
    from spatialgen.demo.app import MAX_WAITING, build_app

    app = build_app(DemoModels("embedded"))  # building loads no weights
    torch_jobs = {"on_generate", "on_compare", "on_read", "on_draw"}
    groups = {fn.name: (fn.concurrency_id, fn.concurrency_limit) for fn in app.fns.values() if fn.name in torch_jobs}
    assert set(groups) == torch_jobs
    assert set(groups.values()) == {("torch", 1)}  # Generate and Read maps use the same I-LDM pipeline
    assert app._queue.max_size == MAX_WAITING  # Gradio keeps the bound on its queue object


def test_generate_and_compare_sent_together_give_the_images_of_running_them_one_after_the_other() -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from gradio_client import Client
    from PIL import Image

    from spatialgen.demo.app import for_display, serve

    prompt = "a red cube to the left of a blue sphere"
    sequential = DemoModels("embedded")
    expected_generate = [for_display(im) for im, _ in generate(DemoRequest(prompt=prompt, steps=4), sequential).images]
    expected_compare = [for_display(im) for im, _ in compare(prompt, 0, 4, sequential, "guidance")]
    port = _free_port()
    app = serve("embedded", host="127.0.0.1", port=port, block=False)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]
        names = {p["label"]: p["parameter_name"] for p in endpoint["parameters"]}
        arguments = {names["Prompt"]: prompt, names["Seed"]: 0, names["Steps"]: 4}
        with ThreadPoolExecutor(2) as pool:  # both in flight at once: one torch worker must take them in turn
            generated = pool.submit(lambda: client.predict(api_name="/generate", **arguments))
            compared = pool.submit(lambda: client.predict(prompt, 0, 4, "guidance", api_name="/compare"))
            generated_gallery, compare_gallery = generated.result(timeout=300)[0], compared.result(timeout=300)
    finally:
        app.close()

    def arrays(gallery) -> list:
        return [np.asarray(Image.open(item["image"]).convert("RGB")) for item in gallery]

    assert all(map(np.array_equal, arrays(generated_gallery), [np.asarray(im) for im in expected_generate]))
    assert all(map(np.array_equal, arrays(compare_gallery), [np.asarray(im) for im in expected_compare]))
    assert len(arrays(compare_gallery)) == 2
