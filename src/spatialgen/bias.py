"""A model's spatial biases: how often it draws each relation right, phrased each way round (``spatialgen bias``).

For held-out scene-world triplets (no training caption holds them), drawn with their own seed
(:data:`BIAS_SEED`, not the evaluation's, so that a TORE tuned on this table is not tuned on the
prompts it is evaluated on), every relation is asked both ways round: "a red cube to the left of a
blue sphere" and its equivalent "a blue sphere to the right of a red cube". Each prompt is sampled
with ``seeds`` seeds; objects are found by the scene detector and 2D relations judged with VISOR's
rule, 3D relations with the project's depth rule on the scene estimator's depth. The accuracy of a
relation is the share of images of prompts phrased with it where both objects are found and the
relation holds (VISOR's "uncond"), with a 95% interval bootstrapped over prompts. TORE
(:mod:`spatialgen.tore`) reads this table from the model's card to choose the phrasing the model
draws best.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .eval.prompts.scene_prompts import EVAL_SEED
from .relations import RELATIONS_2D, RELATIONS_3D
from .tore import swap_objects
from .triplets import parse_triplet

CARD_KEY = "tore_bias"
#: The seed bias prompts are drawn with: the evaluation prompts' seed plus one (see the module docstring).
BIAS_SEED = EVAL_SEED + 1


@dataclass(frozen=True)
class BiasPrompt:
    prompt: str
    a: str
    relation: str
    b: str


def bias_prompts(n_per_relation: int, seed: int | None = None) -> list[BiasPrompt]:
    """``n_per_relation`` held-out triplets per relation, each phrased as drawn and swapped round.

    The held-out split is closed under inversion, so the swapped phrasing is held out too.
    """
    from .eval.prompts.prompt_sets import scene_prompt_set

    relations = RELATIONS_2D + RELATIONS_3D
    records = scene_prompt_set(relations, n_per_relation * len(relations), BIAS_SEED if seed is None else seed)
    out = []
    for record in records:
        out.append(BiasPrompt(record.prompt, record.obj_a, record.relation, record.obj_b))
        swapped = swap_objects(parse_triplet(record.prompt))
        out.append(BiasPrompt(swapped, record.obj_b, parse_triplet(swapped).relation, record.obj_a))
    return out


def judge(images: list[Any], prompts: list[BiasPrompt], detector: Any, depth: Any) -> list[bool]:
    """Whether each image (one per entry of ``prompts``) shows both objects in the prompt's relation."""
    from .eval.scorers import relations3d, visor

    found = detector.detect(images, [[p.a, p.b] for p in prompts])
    three_d = [k for k, p in enumerate(prompts) if p.relation in RELATIONS_3D]
    maps = dict(zip(three_d, depth.disparity([images[k] for k in three_d]), strict=True)) if three_d else {}
    verdicts = []
    for k, (p, dets) in enumerate(zip(prompts, found, strict=True)):
        if p.relation in RELATIONS_3D:
            verdicts.append(relations3d.judge_3d(dets, p.a, p.b, p.relation, maps[k]).passed)
        else:
            verdicts.append(visor.visor_verdict(dets, p.a, p.b, p.relation).passed)
    return verdicts


def bias_table(prompts: list[BiasPrompt], passed: list[bool], seeds: int) -> dict[str, Any]:
    """Accuracy per relation (0-1) with its interval and counts, from per-image verdicts (prompt-major)."""
    from .eval.metrics.statistics import bootstrap_interval

    by_prompt = np.asarray(passed, dtype=float).reshape(len(prompts), seeds).mean(axis=1)
    accuracy, interval, counts = {}, {}, {}
    for relation in RELATIONS_2D + RELATIONS_3D:
        rows = [k for k, p in enumerate(prompts) if p.relation == relation]
        if rows:
            accuracy[relation] = float(by_prompt[rows].mean())
            interval[relation] = list(bootstrap_interval(by_prompt[rows]))
            counts[relation] = len(rows)
    return {"accuracy": accuracy, "interval": interval, "prompts": counts, "seeds": seeds}


def measure_bias(
    pipe: Any,
    n_per_relation: int = 16,
    seeds: int = 4,
    steps: int = 25,
    batch_size: int = 8,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The bias table of ``pipe`` (a diffusers pipeline); images also saved under ``out`` when given."""
    from .eval.detection.depth import SceneDepth
    from .eval.detection.detectors import SceneDetector
    from .generate import GenerationSettings, generate_images, save_generated

    prompts = bias_prompts(n_per_relation)
    settings = GenerationSettings(steps=steps)
    results = generate_images(
        pipe, [p.prompt for p in prompts], n=seeds, seed=42, settings=settings, batch_size=batch_size, progress=progress
    )
    if out is not None:
        save_generated(results, Path(out), {"purpose": "spatialgen bias", "steps": steps}, grid=False)
    expanded = [p for p in prompts for _ in range(seeds)]
    passed = judge([r.image for r in results], expanded, SceneDetector(), SceneDepth())
    table = bias_table(prompts, passed, seeds)
    table["command"] = f"spatialgen bias --prompts {n_per_relation} --seeds {seeds} --steps {steps}"
    return table


def load_bias_table(path: str | os.PathLike[str] | None, pipe: Any) -> dict[str, Any]:
    """The bias table TORE uses: a ``bias.json`` file when given, else the one in the model's card."""
    import json

    from .models.pipeline import model_card

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--tore-bias {str(path)!r} does not exist; write one with `spatialgen bias`")
        table = json.loads(path.read_text())
    else:
        table = model_card(pipe).get(CARD_KEY)
        if table is None:
            raise ValueError(
                "this model's card has no bias table for TORE: measure one with `spatialgen bias --model MODEL "
                "--out DIR` and pass --tore-bias DIR/bias.json"
            )
    if not isinstance(table.get("accuracy"), dict) or not table["accuracy"]:
        raise ValueError("the bias table has no per-relation accuracy; re-measure it with `spatialgen bias`")
    return table
