"""Seconds from clicking Generate to the first image on the demo page, in headless Chromium.

    python benchmarks/demo.py [--clicks 5] [--method "Stable Diffusion"] [--screenshot docs/demo.png]

Serves ``spatialgen demo`` on the embedded model (25 steps, 1 image), opens it in Debian's
Chromium through Playwright, clicks Generate ``--clicks`` times with new seeds and prints the
median and the range; the model is loaded before the first visitor, so every click is warm.
With ``--screenshot`` it saves the page after an I-LDM generation (the README's picture).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

CHROMIUM = "/usr/lib/chromium/chromium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--method", default="Stable Diffusion")
    parser.add_argument("--screenshot", default=None)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from spatialgen.demo.app import serve
    from spatialgen.logs import quiet_libraries

    quiet_libraries()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serve("embedded", port=port, block=False)
    times = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.get_by_label(args.method, exact=True).check()
            for click in range(args.clicks):
                page.fill("#prompt textarea", "a red cube to the left of a blue sphere")
                page.locator("input[type=number]").first.fill(str(click + 1))
                first = page.locator("#gallery img").first
                before = first.get_attribute("src") if page.locator("#gallery img").count() else ""
                started = time.perf_counter()
                page.click("#generate")
                page.wait_for_function(  # a new first image (its src changes with every generation)
                    "(b) => { const im = document.querySelector('#gallery img'); return im && im.src !== b; }",
                    arg=before,
                    timeout=60_000,
                )
                times.append(time.perf_counter() - started)
            if args.screenshot:
                page.get_by_label("I-LDM", exact=True).check()
                page.click("#generate")
                page.wait_for_function("document.querySelectorAll('#maps img').length >= 4", timeout=60_000)
                page.wait_for_timeout(500)
                page.screenshot(path=args.screenshot, full_page=True)
                from PIL import Image  # a palette PNG: the page's flat colours survive, the file shrinks

                with Image.open(args.screenshot) as shot:
                    shot.convert("RGB").quantize(colors=128).save(args.screenshot, optimize=True)
            browser.close()
    finally:
        app.close()
    print(
        f"\n{args.method}, 25 steps, 1 image, {len(times)} clicks: first image after "
        f"{statistics.median(times):.2f} s median ({min(times):.2f}-{max(times):.2f} s)"
    )


if __name__ == "__main__":
    main()
