"""Copy a trained run into the package as the embedded model (fp16), and the scene recogniser / estimator.

    python tools/ship_embedded.py --run runs/base --recogniser runs/recogniser --estimator runs/estimator
    python tools/ship_embedded.py --run runs/base-v2 --measured runs/base-v2/measured.json   # card with targets
    python tools/ship_embedded.py --run runs/vae-decoder   # the base with a fine-tuned decoder (same latents)
    python tools/ship_embedded.py --infsplign-weight 300   # record the InfSplign weight the sweep chose
    python tools/ship_embedded.py --ilora runs/ilora-bench/normal-single_step/adapter ...   # I-LoRA adapters
    python tools/ship_embedded.py --ildm runs/ildm --ildm-measured runs/ildm-bench/consistency.json   # I-LDM

A newly shipped base model drops the old InfSplign recommendation (it was tuned for the old
weights): re-run ``python benchmarks/infsplign.py weights`` and record the winner.

Prints the checkpoint size and how far fp16 storage moves generated pixels from the fp32 run.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from spatialgen.cli.scenes import make_command
from spatialgen.models.pipeline import embedded_path, load_pipeline, model_card, save_pipeline
from spatialgen.training_harness import resume_history

MEASURE_COMMAND = "python benchmarks/embedded_model.py --out FILE.json"

PROMPTS = ["a red cube on a checkered floor", "a blue sphere to the left of a yellow cone", "two green cylinders"]


def images(pipe) -> np.ndarray:
    generators = [torch.Generator().manual_seed(k) for k in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=25, generator=generators, output_type="np").images


def train_commands(resumes: list[dict]) -> list[str]:
    """The `train base` commands that give exactly this run, including the resumes that changed its length.

    A resume that changed ``diffusion_steps`` at step N is replayed as a run stopped after N
    (``--stop-after``) and resumed with the new length: batches are a function of the step, so the
    replay draws the same ones, and the cosine schedule changes where it did.
    """
    first = (
        "spatialgen train base --config src/spatialgen/weights/embedded/spatialgen.json"
        " --data data/scenes-train --out runs/base"
    )
    if not resumes:
        return [first]
    unsupported = [r for r in resumes if r["stage"] != "diffusion" or set(r["changed"]) != {"diffusion_steps"}]
    if unsupported:
        raise ValueError(f"cannot write reproduce commands for resumes that changed {unsupported}")
    commands = [
        f"{first} --diffusion-steps {resumes[0]['changed']['diffusion_steps'][0]} --stop-after {resumes[0]['step']}"
    ]
    for k, resume in enumerate(resumes):
        command = (
            "spatialgen train base --config runs/base/config.json --resume latest"
            f" --diffusion-steps {resume['changed']['diffusion_steps'][1]}"
        )
        if k + 1 < len(resumes):
            command += f" --stop-after {resumes[k + 1]['step']}"
        commands.append(command)
    return commands


def _vae_seconds(vae_run: Path) -> float | None:
    """The intrinsic VAE's training seconds: its held-out record, else its last checkpoint (None when neither says)."""
    from spatialgen.training_harness import checkpoint_seconds

    record = json.loads((vae_run / "held-out.json").read_text())
    if "training_seconds" in record:
        return float(record["training_seconds"])
    checkpoints = sorted((vae_run / "checkpoints").glob("vae-*"))
    seconds = checkpoint_seconds(checkpoints[-1]) if checkpoints else 0.0
    return seconds or None


def consistency_summary(path: Path) -> dict:
    """Means and 95% intervals (bootstrap over prompts) per row and prompt kind of ``ildm_joint.py consistency``."""
    from spatialgen.eval.runs.ildm_consistency import ConsistencyRecords

    rows = json.loads(path.read_text())
    out: dict = {"command": "python benchmarks/ildm_joint.py consistency --model embedded"}
    for key, row in rows.items():
        records = ConsistencyRecords.from_dict(row["records"])
        cell = {
            name: {k: round(v, 4) for k, v in records.summary(name).items()}
            for name, values in records.values.items()
            if not np.all(np.isnan(values))
        }
        out[key] = {"images": len(records.prompt_index), "cmmd": row.get("cmmd"), **cell}
        out.setdefault("settings", row["settings"])
    return out


def ildm_reproduce(training: dict, vae_training: dict) -> list[str]:
    """The two commands that train this I-LDM from scratch on the README's scene set, every recipe flag spelled out."""
    base = "" if training.get("base", "embedded") == "embedded" else " --base runs/base/pipeline"
    vae = (
        f"spatialgen train intrinsic-vae --data data/scenes-train{base} --out runs/ivae"
        f" --steps {vae_training['steps']} --batch-size {vae_training['batch_size']}"
        f" --max-scenes {vae_training['max_scenes']}"
    )
    ildm = (
        f"spatialgen train ildm --data data/scenes-train{base} --intrinsic-vae runs/ivae/intrinsic_vae"
        f" --out runs/ildm --steps {training['steps']} --batch-size {training['batch_size']}"
        f" --lr {training['lr']} --rank {training['rank']} --max-scenes {training['max_scenes']}"
        f" --placement {','.join(training.get('placement', ['self-attention']))}"
    )
    for key in ("p_image_clean", "p_intrinsic_clean", "p_independent", "ema_decay"):
        if training.get(key):
            ildm += f" --{key.replace('_', '-')} {training[key]}"
    return [vae, ildm]


def ship_ildm(run: Path, measured: Path | None = None, machine: str = "") -> None:
    """Copy what I-LDM adds to the embedded base (intrinsic VAE, LoRA, partner input) into weights/embedded-ildm.

    The card records the whole recipe (placement, clean-pair shares, EMA), the CPU-hours of both
    trainings, the commands that reproduce them and, when given, the consistency measurement
    (``benchmarks/ildm_joint.py consistency --out``) of exactly these weights.
    """
    from spatialgen.fileio import atomic_write_json, replace_dir
    from spatialgen.ildm.pipeline import embedded_ildm_path
    from spatialgen.ildm.training import HELD_OUT_NOTE as ILDM_HELD_OUT
    from spatialgen.training_harness import checkpoint_seconds

    pipeline = run / "pipeline"
    if not (pipeline / "intrinsic_lora").is_dir():
        raise SystemExit(f"{pipeline} holds no trained I-LDM; finish `spatialgen train ildm --out {run}` first")
    training = json.loads((run / "config.json").read_text())
    vae_run = Path(training["intrinsic_vae"]).parent
    vae_training = json.loads((vae_run / "config.json").read_text())
    last = sorted((run / "checkpoints").glob("diffusion-*"))
    seconds = {"intrinsic_vae": _vae_seconds(vae_run), "ildm": checkpoint_seconds(last[-1]) if last else None}
    card = {
        "training": training,
        "intrinsic_vae_training": vae_training,
        "intrinsic_vae_held_out": json.loads((vae_run / "held-out.json").read_text()),
        "training_seconds": seconds,
        "cpu_hours": round(sum(s for s in seconds.values() if s) / 3600, 2),
        "machine": machine,
        "held_out": ILDM_HELD_OUT,
        "reproduce": ildm_reproduce(training, vae_training),
    }
    if measured is not None:
        card["measured"] = consistency_summary(measured)
    with replace_dir(embedded_ildm_path()) as tmp:
        for part in ("intrinsic_vae", "intrinsic_lora"):
            shutil.copytree(pipeline / part, tmp / part)
        shutil.copy(pipeline / "ildm.json", tmp / "ildm.json")
        atomic_write_json(tmp / "spatialgen.json", card)
    size = sum(f.stat().st_size for f in embedded_ildm_path().rglob("*") if f.is_file())
    print(f"embedded I-LDM: {size / 1e6:.1f} MB, {card['cpu_hours']} CPU-hours, in {embedded_ildm_path()}")


def ship_ilora(adapters: list[Path]) -> None:
    """Copy I-LoRA adapters into weights/embedded-ilora/<intrinsic>/, after checking they fit the shipped base."""
    from spatialgen.fileio import atomic_write_json, replace_dir
    from spatialgen.ilora import IntrinsicLoRAModel, read_card
    from spatialgen.ilora.extract import embedded_adapters_path
    from spatialgen.ilora.training import HELD_OUT_NOTE

    for folder in adapters:
        card = read_card(folder)
        model = IntrinsicLoRAModel.from_base("embedded", card["variant"])
        model.load(folder)  # refuses an adapter trained on another base
        with replace_dir(embedded_adapters_path() / card["intrinsic"]) as tmp:
            for item in folder.iterdir():
                shutil.copy(item, tmp / item.name)
            card["held_out"].setdefault("note", HELD_OUT_NOTE)  # cards written before the note existed
            atomic_write_json(tmp / "ilora.json", card)
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"I-LoRA {card['intrinsic']} ({card['variant']}, rank {card['rank']}): {size / 1e3:.0f} kB shipped")


WEIGHT_SWEEP = "python benchmarks/infsplign.py weights --prompts 64 --weights 10 30 100 300 1000 3000"


MODEL_VERSION = 2  # the README names the model its figures were measured on by this and the fingerprint


def update_embedded_card(**fields: object) -> Path:
    """Set ``fields`` in the shipped model's card (spatialgen.json), keeping the rest; returns its path."""
    from spatialgen.fileio import atomic_write_json

    card_path = embedded_path() / "spatialgen.json"
    atomic_write_json(card_path, {**json.loads(card_path.read_text()), **fields})
    return card_path


def stamp_card() -> None:
    """Write the shipped model's version and UNet fingerprint into its card (what README tables cite)."""
    from spatialgen.models.fingerprint import base_fingerprint

    fingerprint = base_fingerprint(load_pipeline("embedded").unet)
    update_embedded_card(version=MODEL_VERSION, unet_fingerprint=fingerprint)
    print(f"embedded model: version {MODEL_VERSION}, UNet fingerprint {fingerprint}")


def record_infsplign_weight(weight: float) -> None:
    """Write the recommended InfSplign weight into the embedded model's card (read by ``recommended_weight``)."""
    card_path = update_embedded_card(infsplign={"weight": weight, "chosen_by": WEIGHT_SWEEP})
    print(f"embedded model: InfSplign weight {weight:g} recorded in {card_path}")


def record_tore_bias(path: Path) -> None:
    """Write a ``spatialgen bias --model embedded`` table into the embedded card, where ``generate --tore`` reads it."""
    from spatialgen.bias import CARD_KEY, load_bias_table

    table = load_bias_table(path, None)  # refuses a missing file or one without per-relation accuracy
    if table.get("model") != "embedded":
        raise SystemExit(f"{path} is not a bias table of the embedded model; make one with `spatialgen bias`")
    card_path = update_embedded_card(**{CARD_KEY: table})
    print(f"embedded model: TORE bias table ({table.get('command')}) recorded in {card_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, default=None, help="a `spatialgen train base` or `train vae-decoder` run folder"
    )
    parser.add_argument("--recogniser", type=Path, default=None, help="a `spatialgen train recogniser` folder")
    parser.add_argument("--estimator", type=Path, default=None, help="a `spatialgen train estimator` folder")
    parser.add_argument("--ildm", type=Path, default=None, help="a `spatialgen train ildm` run folder")
    parser.add_argument(
        "--ildm-measured", type=Path, default=None, help="OUT/consistency.json of `ildm_joint.py consistency`"
    )
    parser.add_argument("--infsplign-weight", type=float, default=None, help="InfSplign weight for the model card")
    parser.add_argument("--ilora", type=Path, nargs="+", default=[], help="I-LoRA adapter folders (train ilora)")
    parser.add_argument("--tore-bias", type=Path, default=None, help="`spatialgen bias --model embedded` bias.json")
    parser.add_argument(
        "--measured", type=Path, default=None, help="`benchmarks/embedded_model.py --out` JSON of this run's model"
    )
    parser.add_argument(
        "--machine", default="2-core x86-64 CPU (AMX-BF16), no GPU", help="where the run trained (for its CPU-hours)"
    )
    args = parser.parse_args()
    if args.ildm is not None:
        ship_ildm(args.ildm, args.ildm_measured, args.machine)
    if args.ilora:
        ship_ilora(args.ilora)
    if args.tore_bias is not None:
        record_tore_bias(args.tore_bias)
    for name in ("recogniser", "estimator"):
        folder = getattr(args, name)
        if folder is not None:
            destination = embedded_path().parent / name
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(folder, destination)
            print(f"{name} copied to {destination}")
    if args.run is None:
        if args.infsplign_weight is not None:
            record_infsplign_weight(args.infsplign_weight)
        return

    source = load_pipeline(args.run / "pipeline")
    config = model_card(source)
    manifest = Path(config["training"]["data"]) / "manifest.json"
    if config.get("data") is None and manifest.is_file():
        config["data"] = json.loads(manifest.read_text())["params"]
    resumes = resume_history(args.run)
    config["reproduce"] = [make_command(config["data"]), *train_commands(resumes)]
    if resumes:  # settings changed mid-run (e.g. diffusion_steps, and with it the cosine schedule's length)
        config["resumes"] = resumes
    seconds = config.get("training_seconds") or {}
    if all(seconds.get(stage) for stage in ("vae", "diffusion")):
        config["cpu_hours"] = {stage: round(value / 3600, 3) for stage, value in seconds.items()}
        config["cpu_hours"]["total"] = round(sum(seconds.values()) / 3600, 3)
        config["cpu_hours"]["machine"] = args.machine
    if args.measured is not None:  # the benchmark behind the README's figures, stored with the weights it measured
        config["measured"] = {"command": MEASURE_COMMAND, **json.loads(args.measured.read_text())}
    decoder = config.get("vae_decoder_finetune")
    if decoder is not None:  # a `train vae-decoder` run on top of the base
        config["reproduce"].append(
            f"spatialgen train vae-decoder --base runs/base/pipeline --data data/scenes-train --out runs/vae-decoder"
            f" --steps {decoder['steps']} --batch-size {decoder['batch_size']} --lr {decoder['lr']}"
        )
    target = embedded_path()
    save_pipeline(source, target, fp16=True)
    shipped = load_pipeline("embedded")
    difference = np.abs(images(shipped) - images(source)).max() * 255
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"embedded model: {size / 1e6:.1f} MB in {target}; fp16 storage moves pixels by at most {difference:.1f}/255")
    stamp_card()
    if args.infsplign_weight is not None:
        record_infsplign_weight(args.infsplign_weight)


if __name__ == "__main__":
    main()
