"""ESPLoRA and TORE on the embedded model: base, ESPLoRA, InfSplign and both, each with and without TORE.

    python benchmarks/esplora.py train [--data data/scenes-v2] [--pairs 1000 5000 20000] [--steps-train 2000]
    python benchmarks/esplora.py compare --lora runs/esplora-bench/pairs-20000/lora [--prompts-2d 64 --prompts-3d 32]
    python benchmarks/esplora.py compare --lora ... --no-tore --prompts-2d 192 --prompts-3d 96 --out runs/esplora-wide
        # (one line) the four configurations without TORE on three times the prompts; --configs picks some
    python benchmarks/esplora.py table [--also runs/esplora-lr1e-3]   # README tables: 95% intervals, paired differences
    python benchmarks/esplora.py speed --lora runs/esplora-bench/pairs-20000/lora   # seconds per image, side by side

``train`` curates a scene dataset of the model's own distribution read with its attribute and count
captions only (``--scene-captions``: a source with no spatial captions, so curation synthesises every
spatial caption from the recogniser's detections and depth), shard by shard until it holds the
largest ``--pairs`` (a pair is one image with one of its trainable captions: held-out triplets never
are), and trains one ESPLoRA per size (the data curve) on the fewest curated images that hold that
many pairs, each scored like ``compare``'s ESPLoRA row.
``compare`` samples held-out scene-world triplets (2D and 3D, 4 seeds each; no training caption
holds them) with every configuration and scores them with every spatial benchmark (VISOR, T2I-
CompBench 2D / 3D, GenEval position, the project's 3D rule; objects by the scene recogniser, depth
by the scene estimator), CMMD / Frechet distance to held-out renders, and seconds per image. TORE
reads each configuration's bias table, measured on other held-out prompts (``spatialgen bias`` with
another seed), never on the evaluation prompts. Results go to ``--out/<command>.json``, row by row:
a killed run, started again with the same arguments, resumes at the row it was on.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tarfile
import time
from pathlib import Path

import numpy as np

from spatialgen.bias import bias_prompts, bias_table, judge
from spatialgen.esplora import ESPLoRAConfig, apply_spatial_lora, train_esplora
from spatialgen.eval.detection.depth import SceneDepth
from spatialgen.eval.detection.detectors import SceneDetector
from spatialgen.eval.metrics.quality import scene_quality
from spatialgen.eval.metrics.statistics import bootstrap_interval, paired_difference_interval
from spatialgen.eval.prompts.prompt_sets import scene_prompt_set
from spatialgen.eval.runs.image_sets import collect_images
from spatialgen.eval.runs.run_folder import RunFolder
from spatialgen.eval.runs.spatial_eval import parse_images, run_spatial, spatial_tables
from spatialgen.fileio import atomic_write_json
from spatialgen.generate import GenerationSettings, generate_images, save_generated
from spatialgen.generators import load_generator
from spatialgen.logs import quiet_libraries
from spatialgen.models.data import model_scene_config
from spatialgen.models.pipeline import model_card
from spatialgen.scenes import make_sample, scene_seed
from spatialgen.scenes.held_out import HELD_OUT_SEED
from spatialgen.tore import tore_rewrite

CONFIGS = (("base", "sd", False), ("esplora", "sd", True), ("infsplign", "infsplign", False))
CONFIGS += (("esplora+infsplign", "infsplign", True),)
#: Arguments that choose which rows to make or concern another command, not how a row is made.
NOT_ROW_SETTINGS = ("command", "pairs", "speed_batch", "speed_rounds", "also", "configs", "no_tore")
CHUNK = 1000  # scenes per curated shard: one scene-dataset shard each, so each is indexed once


def generator_for(method: str, lora: str | None, model: str):
    generator = load_generator(method, model)
    if lora is not None:
        apply_spatial_lora(generator.pipe, lora, 1.0, model)
    return generator


def measured_bias(generator, n: int, seeds: int, steps: int) -> dict:
    """The configuration's accuracy per relation on held-out prompts drawn with another seed than the evaluation's."""
    prompts = bias_prompts(n)  # drawn with BIAS_SEED, never the evaluation prompts' seed
    results = generate_images(
        generator,
        [p.prompt for p in prompts],
        n=seeds,
        seed=7,
        settings=GenerationSettings(steps=steps),
        progress=False,
    )
    expanded = [p for p in prompts for _ in range(seeds)]
    return bias_table(prompts, judge([r.image for r in results], expanded, SceneDetector(), SceneDepth()), seeds)


def sampled_prompts(prompts: list[str], bias: dict | None, tau: float) -> list[str]:
    """What a configuration samples: the prompts, or with a TORE bias table their rewrites."""
    return [tore_rewrite(p, bias["accuracy"], tau).prompt for p in prompts] if bias else prompts


def score_configuration(generator, prompts: list[str], args, work: Path, name: str, tore: dict | None) -> dict:
    sampled = sampled_prompts(prompts, tore, args.tau)
    start = time.perf_counter()
    results = generate_images(
        generator, sampled, n=args.seeds, seed=42, settings=GenerationSettings(steps=args.steps), progress=False
    )
    seconds = (time.perf_counter() - start) / len(results)
    folder = work / name
    save_generated(results, folder / "images", {"configuration": name}, grid=False)
    parsed, _ = parse_images(collect_images(folder / "images"), folder / "images")
    run = RunFolder(folder / "eval", {"kind": "spatial", "configuration": name})
    run_spatial(parsed, SceneDetector(), run, SceneDepth(), progress=False)
    records = scored_records(run.records, sampled)
    tables = spatial_tables(records)
    config = model_scene_config(model_card(generator.pipe))
    size = generator.pipe.unet.config.sample_size * generator.pipe.vae_scale_factor
    renders = [make_sample(scene_seed(HELD_OUT_SEED, i), size, config).rgb for i in range(len(results))]
    quality = scene_quality([r.image for r in results], renders)
    return {
        "tables": tables,
        "cmmd": quality.cmmd_recogniser,
        "frechet": quality.frechet_recogniser,
        "seconds_per_image": seconds,
        "images": len(results),
        "rewritten": sum(a != b for a, b in zip(prompts, sampled, strict=True)),
        "per_prompt": per_prompt_rates(records),
        "sampled": sampled,
    }


def prompt_index(key: str) -> int:
    """The number a file name starts with: ``save_generated`` numbers distinct prompt texts (``NNN-slug-seedS``)."""
    match = re.match(r"(\d+)-", Path(key).name)
    if match is None:
        raise ValueError(f"{key!r} is not named by its prompt's number (NNN-...); was it made by save_generated?")
    return int(match.group(1))


def scored_records(saved: dict[str, dict], sampled: list[str]) -> list[dict]:
    """Every evaluation prompt's scored images, its prompt id its position in ``sampled``.

    TORE can rewrite two evaluation prompts into one text ("A in front of B" and "B behind A").
    ``save_generated`` then writes that text's images once (same text, same seeds: the same
    images), numbering files by position among the distinct texts; each prompt that sampled the
    text gets its records, so every row keeps all its prompts, paired with the same prompts in
    every other row.
    """
    by_file: dict[int, list[dict]] = {}
    for _, record in sorted(saved.items()):
        by_file.setdefault(prompt_index(record["key"]), []).append(record)
    file_of = {text: k for k, text in enumerate(dict.fromkeys(sampled))}
    return [{**r, "prompt_id": i} for i, text in enumerate(sampled) for r in by_file.get(file_of[text], [])]


def per_prompt_rates(records: list[dict]) -> dict[str, list[float]]:
    """Each prompt's VISOR_uncond (2D) and 3D accuracy_uncond, in percent, in prompt order.

    The unit of the bootstrap is the prompt (its seeds together); prompt ids follow the prompt list
    (files are named by prompt index), so the same index is the same prompt in every configuration.
    """
    hits: dict[str, dict[int, list[bool]]] = {"visor_uncond": {}, "rel3d_uncond": {}}
    for r in records:
        if "visor" in r:
            v = r["visor"]
            hits["visor_uncond"].setdefault(r["prompt_id"], []).append(
                v["passed"] and v["a_present"] and v["b_present"]
            )
        if "rel3d" in r:
            v = r["rel3d"]
            correct = v["a_present"] and v["b_present"] and v["found"] == r["relation"]
            hits["rel3d_uncond"].setdefault(r["prompt_id"], []).append(correct)
    return {name: [100.0 * float(np.mean(h[k])) for k in sorted(h)] for name, h in hits.items()}


def compare(args) -> dict:
    work = Path(args.out) / "compare"
    prompts = evaluation_prompts(args.prompts_2d, args.prompts_3d)
    rows = ResultRows(Path(args.out) / "compare.json", args)
    for name, method, with_lora in CONFIGS:
        done = name in rows and (args.no_tore or f"{name} + TORE" in rows)
        if name not in args.configs or done:
            continue
        generator = generator_for(method, args.lora if with_lora else None, args.model)
        if name not in rows:
            rows[name] = score_configuration(generator, prompts, args, work, name, None)
        if args.no_tore:
            continue
        bias = measured_bias(generator, args.bias_prompts, args.seeds, args.steps)
        rows[f"{name} + TORE"] = {
            **score_configuration(generator, prompts, args, work, f"{name}-tore", bias),
            "bias": bias,
        }
        print(json.dumps({k: rows.rows[k]["tables"] for k in (name, f"{name} + TORE")}, indent=1), flush=True)
    return rows.rows


def curated_pairs(folder: Path) -> list[int]:
    """Trainable captions (pairs) of each curated image that has any, in the order training reads them."""
    from spatialgen.esplora.data import trainable

    counts = []
    for shard in sorted((folder / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            records = {m.name: tar.extractfile(m).read() for m in tar if m.name.endswith(".json")}
        for name in sorted(records):
            n = sum(trainable(c) for c in json.loads(records[name])["captions"])
            if n:
                counts.append(n)
    return counts


def curate_enough(args, folder: Path, pairs: int) -> tuple[dict, list[int]]:
    """Curate the source's first shards until they hold ``pairs`` trainable pairs (each call resumes the last).

    Returns the curation report and :func:`curated_pairs` of what it curated. Never asks for fewer
    shards than the folder holds: the report then describes every curated image, not a prefix.
    """
    from spatialgen.curate import CurationSettings, curate

    kinds = tuple(k for k in args.scene_captions.split(",") if k) if args.scene_captions else None
    shards = max(math.ceil(pairs / CHUNK), len(list((folder / "shards").glob("*.tar"))))
    while True:
        report = curate(args.data, folder, CurationSettings(), scene_captions=kinds, chunk=CHUNK, max_shards=shards)
        counts = curated_pairs(folder)
        have = sum(counts)
        if have >= pairs:
            return report, counts
        if report["shards"] < shards:
            raise SystemExit(f"{args.data} curates to {have} pairs, fewer than the {pairs} asked for")
        shards = report["shards"] + math.ceil(1.1 * (pairs - have) * report["shards"] / max(have, 1))


def train(args) -> dict:
    curated = Path(args.out) / "curated"
    report, per_image = curate_enough(args, curated, max(args.pairs))
    counts = np.cumsum(per_image)
    prompts = evaluation_prompts(args.prompts_2d, args.prompts_3d)
    rows = ResultRows(Path(args.out) / "train.json", args)
    rows["curation"] = report
    for pairs in args.pairs:
        if f"pairs-{pairs}" in rows:
            continue
        images = int(np.searchsorted(counts, pairs) + 1)  # the fewest curated images that hold this many pairs
        cfg = ESPLoRAConfig(
            data=[str(curated)],
            out=str(Path(args.out) / f"pairs-{pairs}"),
            base=args.model,
            steps=args.train_steps,
            max_items=images,
            lr=args.lr,
            rank=args.rank,
        )
        folder = Path(cfg.out) / "lora"
        if not (folder / "esplora.json").is_file():
            resume = "latest" if (Path(cfg.out) / "checkpoints").is_dir() else None
            train_esplora(cfg, resume=resume)
        generator = generator_for("sd", str(folder), args.model)
        row = score_configuration(generator, prompts, args, Path(args.out), f"pairs-{pairs}", None)
        rows[f"pairs-{pairs}"] = {**row, "pairs": int(counts[images - 1]), "training_images": images}
        print(json.dumps({f"pairs-{pairs}": row["tables"]}, indent=1), flush=True)
    return rows.rows


class ResultRows:
    """A benchmark's rows, saved after each one (atomically), so a killed run resumes at the next row.

    A file written with other arguments is another experiment: refused rather than mixed in. Only
    :data:`NOT_ROW_SETTINGS` may change between runs (``--pairs`` chooses rows, not how one is made).
    """

    def __init__(self, path: Path, args) -> None:
        self.path = path
        self.args = {k: v for k, v in vars(args).items() if k not in NOT_ROW_SETTINGS}
        self.rows: dict = {}
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved["args"] != self.args:
                raise SystemExit(f"{path} holds results for other arguments; choose another --out or remove it")
            self.rows = saved["rows"]

    def __contains__(self, name: str) -> bool:
        return name in self.rows

    def __setitem__(self, name: str, row: dict) -> None:
        self.rows[name] = row
        atomic_write_json(self.path, {"args": self.args, "rows": self.rows})


def speed(args) -> dict:
    """Seconds per image of every configuration, interleaved round by round, medians after a warm-up round.

    ``compare``'s per-row times are taken hours apart and share the CPU with whatever else runs;
    the issue's "time within 5% of the base" needs the configurations timed side by side.
    """
    import statistics

    prompts = evaluation_prompts(args.prompts_2d, args.prompts_3d)[: args.speed_batch]
    generators = {
        name: generator_for(method, args.lora if with_lora else None, args.model) for name, method, with_lora in CONFIGS
    }
    times: dict[str, list[float]] = {name: [] for name in generators}
    for round_ in range(args.speed_rounds + 1):
        for name, generator in generators.items():
            start = time.perf_counter()
            generate_images(
                generator, prompts, n=1, seed=42, settings=GenerationSettings(steps=args.steps), progress=False
            )
            if round_ > 0:  # the first round warms up
                times[name].append((time.perf_counter() - start) / len(prompts))
    base = statistics.median(times["base"])
    rows = {
        name: {"seconds_per_image": statistics.median(t), "ratio_to_base": statistics.median(t) / base, "rounds": t}
        for name, t in times.items()
    }
    atomic_write_json(Path(args.out) / "speed.json", {"args": vars(args), "rows": rows})
    for name, row in rows.items():
        print(f"| {name} | {row['seconds_per_image']:.3f} | {row['ratio_to_base']:.3f} |")
    return rows


def interval(values: list[float]) -> str:
    low, high = bootstrap_interval(values)
    return f"{np.mean(values):.1f} ({low:.1f}-{high:.1f})"


def difference(a: list[float], b: list[float]) -> str:
    """b - a over the same prompts, with its paired bootstrap interval; a direction only when it excludes 0."""
    mean, low, high = paired_difference_interval(a, b)
    verdict = "higher" if low > 0 else "lower" if high < 0 else "no clear difference"
    return f"{mean:+.1f} ({low:+.1f} to {high:+.1f}; {verdict})"


def rescored(rows: dict, work: Path, args: dict) -> dict:
    """Rows with tables and per-prompt rates recomputed from their saved image records.

    So that a table always reflects the current scoring code, without sampling anything again
    (rows saved before a row kept its sampled prompts lost a prompt when TORE merged two; their
    prompts are rebuilt from the row's arguments and bias table).
    """
    prompts = evaluation_prompts(args["prompts_2d"], args["prompts_3d"])
    out = {}
    for name, row in rows.items():
        folder = name.replace(" + TORE", "-tore")
        sampled = row.get("sampled") or sampled_prompts(prompts, row.get("bias"), args["tau"])
        run = RunFolder(work / folder / "eval", {"kind": "spatial", "configuration": folder})
        records = scored_records(run.records, sampled)
        out[name] = {**row, "tables": spatial_tables(records), "per_prompt": per_prompt_rates(records)}
    return out


def evaluation_prompts(n_2d: int, n_3d: int) -> list[str]:
    """The held-out evaluation prompts: ``n_2d`` 2D then ``n_3d`` 3D scene-world triplets."""
    prompts = [r.prompt for r in scene_prompt_set("2d", n_2d)]
    return prompts + [r.prompt for r in scene_prompt_set("3d", n_3d)]


def table(args) -> None:
    """README tables from ``compare.json`` and ``train.json`` (whichever exist), with 95% intervals."""
    out = Path(args.out)
    base = None  # the base's per-prompt rates, which the data curve is paired against
    if (out / "compare.json").is_file():
        saved = json.loads((out / "compare.json").read_text())
        order = [n for name, _, _ in CONFIGS for n in (name, f"{name} + TORE")]  # the saved file's keys are sorted
        rows = rescored({k: saved["rows"][k] for k in order if k in saved["rows"]}, out / "compare", saved["args"])
        base = rows["base"]["per_prompt"]
        n2, n3 = len(base["visor_uncond"]), len(base["rel3d_uncond"])
        print(f"2D: {n2} held-out prompts x {rows['base']['images'] // (n2 + n3)} seeds; 3D: {n3} prompts\n")
        print(
            "| configuration | OA | VISOR_cond | VISOR_uncond (95% CI) | VISOR_1 / 2 / 3 / 4 | T2I 2D | GenEval pos. |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, row in rows.items():
            v, t = row["tables"]["VISOR (2D, %)"], row["tables"]
            ns = " / ".join(f"{v[f'VISOR_{k}']:.0f}" for k in range(1, 5) if f"VISOR_{k}" in v)
            print(
                f"| {name} | {v['OA']:.1f} | {v['VISOR_cond']:.1f} | {interval(row['per_prompt']['visor_uncond'])} "
                f"| {ns} | {t['T2I-CompBench 2D spatial']['score']:.3f} | {t['GenEval position']['overall']:.1f} |"
            )
        print("\n| configuration | 3D OA | 3D acc._uncond (95% CI) | T2I 3D | CMMD | Frechet | rewritten |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, row in rows.items():
            r3, t = row["tables"]["3D relations (ours, %)"], row["tables"]
            print(
                f"| {name} | {r3['OA']:.1f} | {interval(row['per_prompt']['rel3d_uncond'])} "
                f"| {t['T2I-CompBench 3D spatial']['score']:.3f} | {row['cmmd']:.3f} | {row['frechet']:.2f} "
                f"| {row['rewritten']} |"
            )
        print("\nPaired differences (percentage points, same prompts and seeds):\n")
        print("| comparison | VISOR_uncond | 3D accuracy_uncond |")
        print("| --- | --- | --- |")
        pairs = [(a, "base") for a in rows if a != "base"] + [
            ("esplora", "infsplign"),
            ("esplora+infsplign", "esplora"),
        ]
        pairs += [("esplora+infsplign", "infsplign")] + [(f"{name} + TORE", name) for name, _, _ in CONFIGS[1:]]
        for a, b in pairs:
            if a in rows and b in rows:
                pa, pb = rows[b]["per_prompt"], rows[a]["per_prompt"]
                print(
                    f"| {a} - {b} | {difference(pa['visor_uncond'], pb['visor_uncond'])} "
                    f"| {difference(pa['rel3d_uncond'], pb['rel3d_uncond'])} |"
                )
    if (out / "speed.json").is_file():  # compare's own times are hours apart on a shared CPU: speed's are the figure
        print("\n| configuration | s / image | ratio to base |\n| --- | --- | --- |")
        for name, row in json.loads((out / "speed.json").read_text())["rows"].items():
            print(f"| {name} | {row['seconds_per_image']:.3f} | {row['ratio_to_base']:.3f} |")
    folders = [out, *map(Path, args.also)]
    curve = [row for folder in folders for row in train_rows(folder)]
    if curve:
        first = next(folder for folder in folders if (folder / "train.json").is_file())
        curation = json.loads((first / "train.json").read_text())["rows"]["curation"]
        print(f"\nCuration: {json.dumps(curation['counts'])}; balance {json.dumps(curation['balance'])}\n")
        print(
            "| curated pairs | training images | lr | VISOR_uncond (95% CI) | minus base "
            "| 3D accuracy_uncond (95% CI) | minus base | CMMD |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in sorted(curve, key=lambda r: (r["lr"], r["pairs"])):
            pp = row["per_prompt"]
            minus = [difference(base[k], pp[k]) if base else "" for k in ("visor_uncond", "rel3d_uncond")]
            print(
                f"| {row['pairs']} | {row['training_images']} | {row['lr']:g} | {interval(pp['visor_uncond'])} "
                f"| {minus[0]} | {interval(pp['rel3d_uncond'])} | {minus[1]} | {row['cmmd']:.3f} |"
            )


def train_rows(out: Path) -> list[dict]:
    """The data-curve rows of a ``train`` output folder (none without one), rescored, each with its lr."""
    if not (out / "train.json").is_file():
        return []
    saved = json.loads((out / "train.json").read_text())
    rows = {k: v for k, v in saved["rows"].items() if k != "curation"}
    return [{**row, "lr": saved["args"]["lr"]} for row in rescored(rows, out, saved["args"]).values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("train", "compare", "table", "speed"))
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default="data/scenes-v2", help="train: the scene dataset to curate")
    parser.add_argument(
        "--scene-captions", default="attributes,count", help="train: caption kinds curation reads ('' for all)"
    )
    parser.add_argument("--pairs", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--steps-train", dest="train_steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--lora", default=None, help="compare: the ESPLoRA folder")
    names = [name for name, _, _ in CONFIGS]
    parser.add_argument("--configs", nargs="+", choices=names, default=names, help="compare: configurations to run")
    parser.add_argument("--no-tore", action="store_true", help="compare: skip the + TORE rows")
    parser.add_argument("--prompts-2d", type=int, default=64)
    parser.add_argument("--prompts-3d", type=int, default=32)
    parser.add_argument("--bias-prompts", type=int, default=8, help="TORE's bias table: prompts per relation")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25, help="sampling steps")
    parser.add_argument("--tau", type=float, default=0.05)
    parser.add_argument("--out", default="runs/esplora-bench")
    parser.add_argument("--speed-batch", type=int, default=8, help="speed: prompts per timed batch")
    parser.add_argument("--also", nargs="*", default=[], help="table: other `train` --out folders (another --lr)")
    parser.add_argument("--speed-rounds", type=int, default=5, help="speed: timed rounds after the warm-up")
    args = parser.parse_args()
    quiet_libraries()
    if args.command in ("compare", "speed") and args.lora is None:
        parser.error("compare needs --lora (a `train esplora` folder, e.g. from `benchmarks/esplora.py train`)")
    if args.command == "table":
        return table(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"compare": compare, "train": train, "speed": speed}[args.command](args)


if __name__ == "__main__":
    main()
