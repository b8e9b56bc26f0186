"""The demo page under load: concurrent visitors, lost or wrong answers, latency, memory, a full queue.

    python benchmarks/demo_load.py [--clients 8] [--seconds 180] [--steps 10]

Starts ``spatialgen demo`` on the embedded model in its own process and drives it with
``--clients`` gradio_client visitors at once for ``--seconds``, each sending a mix of Generate
(Stable Diffusion and I-LDM) and Compare requests with a few seeds. Every answer is checked pixel
for pixel against the same request run sequentially in this process (the demo's callbacks), so a
request that ran concurrently with another on one pipeline shows up as *wrong*. Prints requests
answered, lost (an error) and wrong; p50 / p95 latency; the server's peak RSS and its RSS after
warm-up against the end (flat means nothing grows per request); and what a visitor is told when
more requests arrive at once than the queue holds.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gallery_arrays(value) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(item["image"]).convert("RGB")) for item in value]


REQUESTS = [
    ("generate", "Stable Diffusion", "a red cube to the left of a blue sphere", 0),
    ("generate", "Stable Diffusion", "a yellow cylinder above a green cone", 1),
    ("generate", "I-LDM", "a purple sphere in front of a gray cube", 2),
    ("generate", "I-LDM", "a red cube to the left of a blue sphere", 3),
    ("compare", "guidance", "a red cube to the left of a blue sphere", 4),
]


def references(steps: int) -> dict[int, list[np.ndarray]]:
    """Each request's images, run one at a time through the demo's own callbacks (what the page shows)."""
    from spatialgen.demo.app import for_display
    from spatialgen.demo.callbacks import DemoModels, DemoRequest, compare, generate

    models = DemoModels("embedded")
    out = {}
    for k, (kind, mode, prompt, seed) in enumerate(REQUESTS):
        if kind == "generate":
            result = generate(DemoRequest(prompt=prompt, seed=seed, steps=steps, method=mode), models)
            shown = [im for im, _ in result.images]
        else:
            shown = [im for im, _ in compare(prompt, seed, steps, models, mode)]
        out[k] = [np.asarray(for_display(im).convert("RGB")) for im in shown]
    return out


def generate_parameters(client) -> dict[str, str]:
    """The /generate endpoint's parameter names by the label of the page's component (Prompt, Seed, ...)."""
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]
    return {p["label"]: p["parameter_name"] for p in info["parameters"]}


def submit(client, names: dict[str, str], request: tuple, steps: int):
    kind, mode, prompt, seed = request
    if kind == "compare":
        return client.submit(prompt, seed, steps, mode, api_name="/compare")
    values = {"Prompt": prompt, "Seed": seed, "Steps": steps, "Method": mode}
    return client.submit(api_name="/generate", **{names[label]: value for label, value in values.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    from gradio_client import Client

    from spatialgen.demo.app import MAX_WAITING

    expected = references(args.steps)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "spatialgen", "demo", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                Client(url, verbose=False)
                break
            except Exception:
                time.sleep(0.5)
        rss: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample_rss() -> None:
            while not stop.is_set():
                rss.append((time.monotonic(), rss_mb(server.pid)))
                time.sleep(1.0)

        latencies: list[float] = []
        answered = lost = wrong = 0
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds
        started = time.monotonic()

        def visitor(seed: int) -> None:
            nonlocal answered, lost, wrong
            client = Client(url, verbose=False)
            names = generate_parameters(client)
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                k = rng.randrange(len(REQUESTS))
                t0 = time.monotonic()
                try:
                    result = submit(client, names, REQUESTS[k], args.steps).result(timeout=600)
                    images = gallery_arrays(result[0] if REQUESTS[k][0] == "generate" else result)
                    ok = len(images) == len(expected[k]) and all(
                        np.array_equal(a, b) for a, b in zip(images, expected[k], strict=True)
                    )
                    with lock:
                        answered += 1
                        wrong += not ok
                        latencies.append(time.monotonic() - t0)
                except Exception as error:  # a lost request: timed out, refused or failed
                    with lock:
                        lost += 1
                        errors.append(f"{type(error).__name__}: {error}"[:200])

        watcher = threading.Thread(target=sample_rss, daemon=True)
        watcher.start()
        threads = [threading.Thread(target=visitor, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        elapsed = time.monotonic() - started
        warm = [mb for t, mb in rss if t - started > 0.25 * elapsed] or [float("nan")]
        print(f"{args.clients} clients for {elapsed:.0f} s, {args.steps} steps per image, embedded model")
        print(f"answered {answered}, lost {lost}, wrong {wrong} (each answer compared pixel for pixel)")
        if latencies:
            p50, p95 = np.percentile(latencies, [50, 95])
            print(f"latency p50 {p50:.1f} s, p95 {p95:.1f} s (queue wait included)")
        peak = max(mb for _, mb in rss)
        print(f"server RSS: peak {peak:.0f} MB; after warm-up {warm[0]:.0f} MB, at the end {warm[-1]:.0f} MB")
        for error in errors[:5]:
            print("  lost:", error)

        burst = [Client(url, verbose=False) for _ in range(4)]
        names = generate_parameters(burst[0])
        jobs = [submit(burst[i % 4], names, REQUESTS[0], args.steps) for i in range(2 * MAX_WAITING + 4)]
        told = {}
        for job in jobs:
            try:
                job.result(timeout=900)
                told["answered"] = told.get("answered", 0) + 1
            except Exception as error:
                message = str(error).splitlines()[0][:120]
                told[message] = told.get(message, 0) + 1
        print(f"{len(jobs)} requests at once against a queue of {MAX_WAITING}: {told}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
