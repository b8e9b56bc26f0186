"""Intrinsic LoRA on the embedded model: accuracy per intrinsic and variant, the control, ablations, cost.

    python benchmarks/ilora.py vae         # per intrinsic: the VAE round trip of exact maps, base vs decoder adapter
    python benchmarks/ilora.py main        # per intrinsic: single-step, augmented, decoder, the estimator
    python benchmarks/ilora.py control     # the same single-step training on a randomly initialised UNet
    python benchmarks/ilora.py rank        # normals at rank 2 / 4 / 8 / 16 / 32
    python benchmarks/ilora.py size        # normals from 250 / 1,000 / 4,000 labelled images
    python benchmarks/ilora.py layers      # normals with LoRA on self-, cross- or both attentions
    python benchmarks/ilora.py sampling    # augmented normals at 5 / 10 / 25 DPM-Solver++ steps
    python benchmarks/ilora.py generated   # on the base model's own images, against the estimator's maps
    python benchmarks/ilora.py figure      # the README picture: image, exact map and prediction per intrinsic
    python benchmarks/ilora.py cost        # seconds per training step and per extracted image, per variant

Every row trains one adapter with ``spatialgen.ilora.train_ilora`` into ``--out/<row>/`` (a finished
row is reused, an interrupted one resumes), then predicts the maps of ``--held-out`` renders from
the held-out scene seed in the data's distribution, which no training set uses, and scores them
against the exact maps (Tab. 3 style). ``generated`` scores single-step adapters on images the base
model draws for held-out attribute prompts, against the embedded estimator's maps (Tab. 2 style:
pseudo ground truth). Measures are per image, with 95% intervals bootstrapped over images: normals
mean angle and share of pixels within 11.25 degrees, depth AbsRel and delta1 after scale-and-shift
alignment, albedo and shading scale-invariant RMS. Results go to ``--out/<experiment>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from spatialgen.eval.metrics.statistics import bootstrap_interval
from spatialgen.ilora import INTRINSICS, ILoRATrainConfig, IntrinsicLoRAModel, train_ilora
from spatialgen.ilora.scoring import MEASURES, per_image_scores
from spatialgen.ilora.training import LabelledImages, held_out_labelled
from spatialgen.logs import quiet_libraries


def summarise(intrinsic: str, values: dict[str, list[float]]) -> dict[str, object]:
    out: dict[str, object] = {"images": len(next(iter(values.values())))}
    for key in MEASURES[intrinsic]:
        out[key] = float(np.mean(values[key]))
        out[f"{key}_ci"] = list(bootstrap_interval(values[key]))
    return out


def trained_adapter(cfg: ILoRATrainConfig) -> tuple[Path, dict]:
    """Train (or reuse, or resume) the row's adapter; its folder and card."""
    folder = Path(cfg.out) / "adapter"
    if not (folder / "ilora.json").is_file():
        resume = "latest" if (Path(cfg.out) / "checkpoints").is_dir() else None
        train_ilora(cfg, resume=resume)
    return folder, json.loads((folder / "ilora.json").read_text())


@torch.no_grad()
def predict_all(
    model: IntrinsicLoRAModel, intrinsic: str, images: torch.Tensor, **options
) -> tuple[torch.Tensor, float]:
    """Maps of uint8 images, and seconds per image."""
    start, out = time.perf_counter(), []
    for i in range(0, len(images), 32):
        batch = images[i : i + 32].float() / 127.5 - 1
        out.append(model.predict(batch, intrinsic, generator=torch.Generator().manual_seed(i), **options))
    return torch.cat(out), (time.perf_counter() - start) / len(images)


def object_scores(intrinsic: str, pred: torch.Tensor, data: LabelledImages) -> dict[str, object]:
    """Normals on object pixels alone (the floor, most of each image, is one flat plane and easy)."""
    from spatialgen.eval.metrics.intrinsic_metrics import normal_metrics

    if intrinsic != "normal" or data.objects is None:
        return {}
    values = [
        normal_metrics(p[None], t[None], mask=m)["mean"]
        for p, t, m in zip(pred, data.maps, data.objects, strict=True)
        if m.any()
    ]
    return {"objects_mean": float(np.mean(values)), "objects_mean_ci": list(bootstrap_interval(values))}


def adapter_row(cfg: ILoRATrainConfig, data: LabelledImages, **options) -> dict[str, object]:
    folder, card = trained_adapter(cfg)
    model = cfg.build_model()
    model.load(folder)
    pred, seconds = predict_all(model, cfg.intrinsic, data.images, **options)
    return {
        **summarise(cfg.intrinsic, per_image_scores(cfg.intrinsic, pred, data.maps)),
        **object_scores(cfg.intrinsic, pred, data),
        "lora_parameters": card["parameters"]["lora"],
        "lora_percent": card["parameters"]["percent"],
        "training_seconds": card.get("training_seconds"),
        "seconds_per_image": seconds,
    }


def estimator_row(intrinsic: str, data: LabelledImages) -> dict[str, object]:
    from spatialgen.eval.scene.scene_estimator import SceneEstimator
    from spatialgen.ilora.targets import estimated_maps

    start = time.perf_counter()
    estimated = SceneEstimator.load().estimate(data.images.float() / 127.5 - 1)
    seconds = (time.perf_counter() - start) / len(data.images)
    pred = torch.from_numpy(estimated_maps(estimated, [intrinsic])[intrinsic])
    return {
        **summarise(intrinsic, per_image_scores(intrinsic, pred, data.maps)),
        **object_scores(intrinsic, pred, data),
        "seconds_per_image": seconds,
    }


def rows_for(experiment: str, base: ILoRATrainConfig, args) -> list[tuple[str, ILoRATrainConfig, dict]]:
    """(row name, training config, prediction options) of an experiment."""
    out = Path(args.out)

    def row(name: str, **changes) -> ILoRATrainConfig:
        if changes.get("variant") == "decoder":  # its LoRA is the decoder adapter
            changes["decoder_rank"] = None
        return replace(base, out=str(out / name), **changes)

    if experiment == "main":
        return [
            (f"{i}/{v}", row(f"{i}-{v}", intrinsic=i, variant=v), {})
            for i in args.intrinsics
            for v in ("single_step", "augmented", "decoder")
        ]
    if experiment == "control":
        return [
            ("normal/pretrained", row("normal-single_step", intrinsic="normal"), {}),
            ("normal/random init", row("normal-random", intrinsic="normal", random_init=True), {}),
            ("depth/pretrained", row("depth-single_step", intrinsic="depth"), {}),
            ("depth/random init", row("depth-random", intrinsic="depth", random_init=True), {}),
        ]

    def ablation(name: str, **changes) -> ILoRATrainConfig:
        # the setting the main table already trained is its single-step normals row, not a new one
        same = all(getattr(base, key) == value for key, value in changes.items())
        return row("normal-single_step" if same else name, intrinsic="normal", **changes)

    if experiment == "rank":
        return [(f"rank {r}", ablation(f"normal-rank{r}", rank=r), {}) for r in args.ranks]
    if experiment == "size":
        return [(f"{n} images", ablation(f"normal-n{n}", max_scenes=n), {}) for n in args.sizes]
    if experiment == "layers":
        return [(f"{lay}", ablation(f"normal-{lay}", layers=lay), {}) for lay in ("self", "cross", "both")]
    if experiment == "sampling":
        cfg = row("normal-augmented", intrinsic="normal", variant="augmented")
        return [(f"{s} steps", cfg, {"steps": s, "guidance": args.guidance}) for s in args.sampling_steps]
    raise ValueError(experiment)


@torch.no_grad()
def vae_rows(intrinsic: str, data: LabelledImages, adapter: Path | None) -> dict[str, dict]:
    """How well the VAE alone carries the intrinsic: exact maps encoded and decoded, base decoder vs adapter.

    This bounds every UNet variant from above (their output is decoded by this decoder). The last
    row asks whether the base decoder can draw the maps at all: latents optimised, per image, to
    decode to them (300 Adam steps on 16 images; a lower bound for the base decoder's error).
    """
    from spatialgen.ilora.targets import image_to_map, map_to_image

    model = IntrinsicLoRAModel.from_base("embedded")
    vae = model.pipe.vae
    targets = map_to_image(intrinsic, data.maps)
    latents = torch.cat([vae.encode(targets[i : i + 64]).latent_dist.mean for i in range(0, len(targets), 64)])

    def decoded(name: str | None) -> torch.Tensor:
        scaled = latents * vae.config.scaling_factor
        if name is None:
            return torch.cat([image_to_map(intrinsic, vae.decode(z).sample) for z in latents.split(64)])
        return torch.cat([model.decode(z, name) for z in scaled.split(64)])

    rows = {f"{intrinsic}/base decoder": summarise(intrinsic, per_image_scores(intrinsic, decoded(None), data.maps))}
    if adapter is not None:
        card = model.load(adapter)
        rows[f"{intrinsic}/decoder adapter (rank {card['decoder_rank']})"] = {
            **summarise(intrinsic, per_image_scores(intrinsic, decoded(intrinsic), data.maps)),
            "decoder_lora_parameters": card["parameters"]["decoder_lora"],
        }
    with torch.enable_grad():
        z = latents[:16].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=0.05)
        for _ in range(300):
            loss = torch.nn.functional.mse_loss(vae.decode(z).sample, targets[:16])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    best = image_to_map(intrinsic, vae.decode(z.detach()).sample)
    rows[f"{intrinsic}/base decoder, best latent"] = summarise(
        intrinsic, per_image_scores(intrinsic, best, data.maps[:16])
    )
    return rows


def cost(args, steps: int = 20, warmup: int = 5, images: int = 64) -> dict[str, dict]:
    """Clean timings on this machine: median seconds per training step (batch ``--batch-size``, the
    default ranks) and per extracted image (batches of 32), per variant, for normals.

    Run it alone: the ``training_seconds`` the other experiments record include whatever else
    shared the CPU while they ran.
    """
    from accelerate import Accelerator

    from spatialgen.ilora.targets import map_to_image
    from spatialgen.ilora.training import encode_pairs, load_labelled
    from spatialgen.training_harness import adapter_step

    rows: dict[str, dict] = {}
    data = load_labelled(args.data, "normal", 256)
    held = held_out_labelled(args.data, "normal", images)
    for variant in ("single_step", "augmented", "decoder"):
        cfg = ILoRATrainConfig(
            data=args.data,
            out="",
            intrinsic="normal",
            variant=variant,
            rank=args.rank,
            decoder_rank=args.decoder_rank,
            batch_size=args.batch_size,
        )
        model = cfg.build_model()
        params = model.add("normal", cfg.rank, cfg.layers, cfg.resolved_decoder_rank)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
        inputs, mean, std = encode_pairs(model, data, "normal")
        accelerator = Accelerator(cpu=True)
        generator = torch.Generator().manual_seed(0)
        times = []
        for step in range(warmup + steps):
            idx = torch.randint(0, len(inputs), (cfg.batch_size,), generator=generator)
            target = None if mean is None else mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=generator)
            start = time.perf_counter()
            loss = model.loss("normal", inputs[idx], target, map_to_image("normal", data.maps[idx]), generator)
            adapter_step(accelerator, loss, params, optimizer)  # the trainer's own step
            if step >= warmup:
                times.append(time.perf_counter() - start)
        model.module.eval()
        options = {"steps": 25} if variant == "augmented" else {}
        predict_all(model, "normal", held.images[:32], **options)  # warm
        _, per_image = predict_all(model, "normal", held.images, **options)
        step_seconds = float(np.median(times))
        rows[f"normal/{variant}"] = {
            "seconds_per_step": step_seconds,
            "minutes_per_1000_steps": step_seconds * 1000 / 60,
            "seconds_per_image": per_image,
        }
    return rows


def map_picture(intrinsic: str, maps: torch.Tensor) -> np.ndarray:
    """A (C, H, W) map in [0, 1] as an RGB picture: depth through a colour map, the rest as they are."""
    from spatialgen.intrinsics import visualise_depth, visualise_unit

    array = maps.float().numpy()
    if intrinsic == "depth":
        return visualise_depth(array[0])
    rgb = np.repeat(array, 3, axis=0) if array.shape[0] == 1 else array
    return visualise_unit(np.moveaxis(rgb, 0, -1))


def figure(args, scenes: int = 4, path: str = "docs/ilora.png") -> dict[str, object]:
    """Held-out renders, then for each intrinsic with a trained single-step adapter its exact map and prediction."""
    from PIL import Image

    from spatialgen.image_grid import image_grid

    tiles: dict[int, list[tuple[Image.Image, str]]] = {k: [] for k in range(scenes)}
    done = []
    for intrinsic in args.intrinsics:
        folder = Path(args.out) / f"{intrinsic}-single_step" / "adapter"
        if not (folder / "ilora.json").is_file():
            continue
        data = held_out_labelled(args.data, intrinsic, scenes)
        model = IntrinsicLoRAModel.from_base(args.base)
        model.load(folder)
        pred, _ = predict_all(model, intrinsic, data.images)
        for k in range(scenes):
            if not tiles[k]:
                tiles[k].append((Image.fromarray(data.images[k].permute(1, 2, 0).numpy()), "held-out render"))
            tiles[k].append((Image.fromarray(map_picture(intrinsic, data.maps[k])), f"{intrinsic}: exact"))
            tiles[k].append((Image.fromarray(map_picture(intrinsic, pred[k])), f"{intrinsic}: I-LoRA"))
        done.append(intrinsic)
    if not done:
        raise FileNotFoundError(
            f"no single-step adapters under {args.out}; run `python benchmarks/ilora.py main` first"
        )
    row = [t for k in range(scenes) for t in tiles[k]]
    size = 128  # 64 px renders shown at twice their size, pixels kept crisp
    images = [im.resize((size, size), Image.Resampling.NEAREST) for im, _ in row]
    image_grid(images, [c for _, c in row], columns=len(tiles[0])).save(path)
    return {"figure": path, "intrinsics": done, "scenes": scenes}


def generated_images(n_prompts: int, seeds: int, intrinsic: str) -> LabelledImages:
    """The base's images for held-out attribute prompts, with the embedded estimator's maps as pseudo truth."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from embedded_model import attribute_scenes

    from spatialgen.eval.scene.scene_estimator import SceneEstimator
    from spatialgen.generate import GenerationSettings, generate_images
    from spatialgen.ilora.targets import estimated_maps
    from spatialgen.models import load_pipeline

    pipe = load_pipeline("embedded")
    prompts = [s.captions["attributes"] for s in attribute_scenes(pipe, n_prompts)]
    results = generate_images(pipe, prompts, n=seeds, seed=42, settings=GenerationSettings(steps=25), progress=False)
    images = torch.from_numpy(np.stack([np.asarray(r.image.convert("RGB")) for r in results])).permute(0, 3, 1, 2)
    estimated = SceneEstimator.load().estimate(images.float() / 127.5 - 1)
    return LabelledImages(images.contiguous(), torch.from_numpy(estimated_maps(estimated, [intrinsic])[intrinsic]))


def print_table(title: str, rows: dict[str, dict]) -> None:
    print(f"\n{title}")
    every = dict.fromkeys(k for values in rows.values() for k in values)
    keys = [k for k in every if not k.endswith("_ci") and k != "images"]
    print("| row | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for name, values in rows.items():
        cells = []
        for k in keys:
            v = values.get(k, "")
            ci = values.get(f"{k}_ci")
            text = f"{v:.4g}" if isinstance(v, float) else str(v)
            cells.append(f"{text} ({ci[0]:.3g}-{ci[1]:.3g})" if ci else text)
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "experiment",
        choices=("cost", "figure", "vae", "main", "control", "rank", "size", "layers", "sampling", "generated"),
    )
    parser.add_argument("--data", default="data/scenes-v2", help="training scenes (exact maps)")
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--out", default="runs/ilora-bench")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per adapter")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=ILoRATrainConfig.rank, help="UNet (or decoder-variant) LoRA rank")
    parser.add_argument(
        "--decoder-rank", type=int, default=ILoRATrainConfig.decoder_rank, help="UNet variants' decoder adapter"
    )
    parser.add_argument("--max-scenes", type=int, default=4000)
    parser.add_argument("--held-out", type=int, default=256)
    parser.add_argument("--intrinsics", nargs="+", default=list(INTRINSICS))
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000])
    parser.add_argument("--sampling-steps", type=int, nargs="+", default=[5, 10, 25])
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--prompts", type=int, default=64, help="generated: held-out attribute prompts (x 2 seeds)")
    args = parser.parse_args()
    quiet_libraries()
    torch.manual_seed(0)
    base = ILoRATrainConfig(
        data=args.data,
        out="",
        base=args.base,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        rank=args.rank,
        decoder_rank=args.decoder_rank,
        max_scenes=args.max_scenes,
        held_out=args.held_out,
    )
    results: dict[str, dict] = {}
    if args.experiment == "figure":
        print(figure(args))
        return
    if args.experiment == "cost":
        results = cost(args)
        print_table("cost: normal, this machine", results)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "cost.json").write_text(json.dumps({"args": vars(args), "rows": results}, indent=2) + "\n")
        return
    if args.experiment == "vae":
        for intrinsic in args.intrinsics:
            adapter = Path(args.out) / f"{intrinsic}-single_step" / "adapter"
            data = held_out_labelled(args.data, intrinsic, args.held_out)
            results.update(vae_rows(intrinsic, data, adapter if (adapter / "ilora.json").is_file() else None))
    elif args.experiment == "generated":
        for intrinsic in ("normal", "depth"):
            data = generated_images(args.prompts, 2, intrinsic)
            cfg = replace(base, out=str(Path(args.out) / f"{intrinsic}-single_step"), intrinsic=intrinsic)
            results[f"{intrinsic}/single_step"] = adapter_row(cfg, data)
    else:
        held: dict[str, LabelledImages] = {}
        for name, cfg, options in rows_for(args.experiment, base, args):
            if cfg.intrinsic not in held:
                held[cfg.intrinsic] = held_out_labelled(args.data, cfg.intrinsic, args.held_out)
            results[name] = adapter_row(cfg, held[cfg.intrinsic], **options)
            if args.experiment == "main" and cfg.variant == "decoder" and cfg.intrinsic in ("normal", "depth"):
                results[f"{cfg.intrinsic}/estimator"] = estimator_row(cfg.intrinsic, held[cfg.intrinsic])
    by_intrinsic: dict[str, dict] = {}
    for name, values in results.items():
        by_intrinsic.setdefault(name.split("/")[0] if "/" in name else "normal", {})[name] = values
    for intrinsic, rows in by_intrinsic.items():
        print_table(f"{args.experiment}: {intrinsic}", rows)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    record = {"experiment": args.experiment, "args": vars(args), "rows": results}
    (Path(args.out) / f"{args.experiment}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
