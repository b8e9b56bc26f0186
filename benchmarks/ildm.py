"""Measure I-LDM against its base model on the scene world: cost, intrinsic VAE error, consistency, objects.

    python benchmarks/ildm.py [--model embedded | RUN/pipeline] [--base embedded] [--prompts 128] [--seeds 2]
    python benchmarks/ildm.py --cost-only | --skip-cost | --unet-only | --profile

1. Sampling time and peak memory per sample at batch 4, 25 DDIM steps, for the base pipeline,
   for the two-domain floor (the base pipeline at batch 8) and for I-LDM under each schedule,
   as ratios to the base and to the floor: time as the median of ``--rounds`` batches timed
   round-robin in one process (so machine drift cancels), peak RSS in a fresh process each.
   Beside it, one UNet call at w = 0, under Drop and at w = 1 against the floor, to show what
   the schedule's skipped keys save (``--unet-only`` for just that); ``--profile`` lists operator
   times, floor vs w = 1.
2. The intrinsic VAE's reconstruction error per intrinsic on 256 held-out scenes.
3. Consistency of the co-generated maps with their image, objects found, VISOR, 3D accuracy and
   CMMD, per schedule against the base, with intervals: ``benchmarks/ildm_joint.py consistency``
   (run here unless ``--skip-consistency``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


KINDS = ("base", "two_domain_floor", "drop", "gaussian", "none")
SCHEDULES = ("drop", "gaussian", "none")
BATCH = 4


def _load(kind: str, model: str, base: str):
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.models import load_pipeline

    return load_ildm_pipeline(model) if kind in SCHEDULES else load_pipeline(base)


def _batch(pipe, kind: str, steps: int, seed: int) -> None:
    """One batch for BATCH prompts; the floor is the base model sampling twice as many images."""
    from spatialgen.generate import GenerationSettings, generate_images

    schedule = kind if kind in SCHEDULES else None
    n = 2 * BATCH if kind == "two_domain_floor" else BATCH
    settings = GenerationSettings(steps=steps)
    generate_images(
        pipe, ["a red cube on the grass"], n=n, seed=seed, settings=settings, progress=False, schedule=schedule
    )


def measure_memory(kind: str, model: str, base: str, steps: int) -> dict[str, float]:
    """This process's peak RSS after loading one pipeline and sampling one batch (run in a fresh process)."""
    pipe = _load(kind, model, base)
    _batch(pipe, kind, steps, seed=0)
    return {"peak_rss_mb": peak_rss_mb()}


def interleaved_times(model: str, base: str, steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per sample (one prompt's output) for each kind, timed round-robin in one process.

    A shared 2-core machine drifts by 20% between minutes; timing the kinds in rotating order in
    one process and comparing medians keeps that drift out of the ratios.
    """
    base_pipe, ildm_pipe = _load("base", model, base), _load("drop", model, base)
    pipes = {kind: ildm_pipe if kind in SCHEDULES else base_pipe for kind in KINDS}
    for kind in KINDS:
        _batch(pipes[kind], kind, steps, seed=0)  # warm-up
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for r in range(rounds):
        for kind in KINDS[r % len(KINDS) :] + KINDS[: r % len(KINDS)]:
            start = time.perf_counter()
            _batch(pipes[kind], kind, steps, seed=BATCH * r)
            times[kind].append((time.perf_counter() - start) / BATCH)
    return {kind: float(np.median(values)) for kind, values in times.items()}


def unet_calls(model: str, base: str) -> dict[str, Callable[[], object]]:
    """One UNet call each on a CFG batch of 4 (8 rows per domain): base, floor and I-LDM at w = 0 / Drop / w = 1.

    ``w0`` skips the intrinsic keys in every block, ``drop`` at t = 500 skips them outside L,
    ``w1`` lets every image query see both domains; ``two_domain_floor`` is the base UNet on
    twice the rows. Each call runs under ``torch.no_grad``, as sampling does.
    """
    from spatialgen.ildm.attention import JointLayout
    from spatialgen.ildm.schedules import ConstantSchedule, make_schedule

    base_unet, ildm = _load("base", model, base).unet, _load("drop", model, base)
    unet, state = ildm.unet, ildm.cross_domain
    rows = 2 * BATCH
    generator = torch.Generator().manual_seed(0)
    size = unet.config.sample_size
    x = torch.randn(rows, unet.config.in_channels, size, size, generator=generator)
    text = torch.randn(rows, 8, unet.config.cross_attention_dim, generator=generator)
    x2, text2 = torch.cat([x, x]), torch.cat([text, text])

    @torch.no_grad()
    def joint(schedule) -> object:
        state.schedule, state.layout, state.timestep = schedule, JointLayout.stacked(rows), 500.0
        try:
            return unet(x2, 500, encoder_hidden_states=text2)
        finally:
            state.layout = None

    schedules = {"w0": ConstantSchedule(0.0), "drop": make_schedule("drop"), "w1": ConstantSchedule(1.0)}
    return {
        "base": torch.no_grad()(lambda: base_unet(x, 500, encoder_hidden_states=text)),
        "two_domain_floor": torch.no_grad()(lambda: base_unet(x2, 500, encoder_hidden_states=text2)),
        **{name: (lambda s=s: joint(s)) for name, s in schedules.items()},
    }


def unet_call_times(model: str, base: str, rounds: int) -> dict[str, float]:
    """Median milliseconds per call of :func:`unet_calls`, timed round-robin in one process."""
    calls = unet_calls(model, base)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    medians = {name: float(np.median(values)) for name, values in times.items()}
    joint = ("w0", "drop", "w1")
    return {**medians, **{f"{name}_ratio_to_floor": medians[name] / medians["two_domain_floor"] for name in joint}}


def profile_against_floor(model: str, base: str, calls: int = 10) -> dict[str, dict[str, float]]:
    """Self CPU milliseconds per operator over ``calls`` UNet calls: the floor beside I-LDM at w = 1.

    Shows where I-LDM's time above the two-domain floor goes, operator by operator.
    """
    from torch.profiler import profile

    runs = unet_calls(model, base)
    table: dict[str, dict[str, float]] = {}
    for name in ("two_domain_floor", "w1"):
        runs[name]()  # warm-up
        with profile() as prof:
            for _ in range(calls):
                runs[name]()
        for event in prof.key_averages():
            table.setdefault(event.key, {})[name] = round(event.self_cpu_time_total / 1000, 1)
    rows = sorted(table.items(), key=lambda item: -max(item[1].values()))[:12]
    total = {name: round(sum(ops.get(name, 0.0) for ops in table.values()), 1) for name in ("two_domain_floor", "w1")}
    return {"total": total, **dict(rows)}


def costs(model: str, base: str, steps: int, rounds: int) -> dict[str, dict[str, float]]:
    """Time (interleaved, one process) and peak memory (one fresh process per kind), as ratios.

    ``two_domain_floor`` is the base pipeline sampling 2 x BATCH images: the same number of UNet
    rows and decodes as I-LDM's image + intrinsic domains without any cross-domain work, so
    ``time_ratio_to_floor`` is I-LDM's own overhead and ``time_ratio_to_base`` the user's cost.
    """
    memory = {}
    for kind in KINDS:  # first, while this process is small: Linux children inherit the parent's peak RSS
        command = [sys.executable, __file__, "--measure-memory", kind, "--model", model, "--base", base]
        command += ["--steps", str(steps)]
        memory[kind] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    seconds = interleaved_times(model, base, steps, rounds)
    out: dict[str, dict[str, float]] = {kind: {"seconds_per_sample": seconds[kind], **memory[kind]} for kind in KINDS}
    for kind in KINDS[1:]:
        out[kind]["time_ratio_to_base"] = seconds[kind] / seconds["base"]
        out[kind]["memory_ratio_to_base"] = out[kind]["peak_rss_mb"] / out["base"]["peak_rss_mb"]
        if kind in SCHEDULES:
            out[kind]["time_ratio_to_floor"] = seconds[kind] / seconds["two_domain_floor"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="embedded or an I-LDM pipeline folder")
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--out", default="runs/ildm-bench", help="where ildm_joint.py keeps its rows")
    parser.add_argument("--skip-consistency", action="store_true")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--cost-only", action="store_true", help="only part 1 (time and memory)")
    parser.add_argument("--skip-cost", action="store_true", help="parts 2 and 3 only (no timing)")
    parser.add_argument("--profile", action="store_true", help="only the operator profile: floor vs I-LDM at w = 1")
    parser.add_argument("--unet-only", action="store_true", help="only the per-UNet-call times against the floor")
    parser.add_argument("--rounds", type=int, default=6, help="timed batches of 4 per kind (median reported)")
    parser.add_argument("--measure-memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from spatialgen.logs import quiet_libraries

    quiet_libraries()
    torch.manual_seed(0)
    if args.measure_memory:
        print(json.dumps(measure_memory(args.measure_memory, args.model, args.base, args.steps)))
        return
    results: dict[str, object] = {"model": args.model, "base": args.base, "threads": torch.get_num_threads()}
    if args.profile or args.unet_only:
        if args.profile:
            results["self_cpu_ms_per_operator"] = profile_against_floor(args.model, args.base)
        else:
            results["unet_call_ms"] = unet_call_times(args.model, args.base, 10 * args.rounds)
        print(json.dumps(results, indent=2))
        return
    if not args.skip_cost:
        results["cost"] = costs(args.model, args.base, args.steps, args.rounds)  # first: it measures peak memory
        results["unet_call_ms"] = unet_call_times(args.model, args.base, 10 * args.rounds)
    if args.cost_only:
        print(json.dumps(results, indent=2))
        return
    from spatialgen.ildm.pipeline import load_ildm_pipeline
    from spatialgen.ildm.vae_training import held_out_packed, reconstruction_errors

    vae = load_ildm_pipeline(args.model).intrinsic_vae
    results["intrinsic_vae_held_out"] = reconstruction_errors(vae, held_out_packed(256, 64))
    print(json.dumps(results, indent=2))
    if not args.skip_consistency:
        sys.path.insert(0, str(Path(__file__).parent))
        import ildm_joint

        joint = argparse.Namespace(**vars(args), kinds=",".join(ildm_joint.KINDS), schedules="drop,gaussian,none")
        ildm_joint.consistency(joint)


if __name__ == "__main__":
    main()
