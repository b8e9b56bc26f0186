"""``spatialgen train``: the embedded base model, the scene recogniser and the scene estimator."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from ..logs import console, quiet_libraries
from .common import friendly_errors

_HELD_OUT_HELP = "Held-out scenes (sampled with --held-out-seed) to score."
_CONFIG_HELP = (
    "A run's config.json to reproduce or resume (flags given override it). Unset flags take the defaults of "
    "the command's config dataclass (written to RUN/config.json)."
)
_RESUME_HELP = "'latest' or a checkpoint folder."
_INIT_HELP = "Fine-tune from a trained network ('embedded' or its folder) instead of random weights."
_CPU_HELP = "Train on the CPU even if a GPU is present."

# Options most trainers take, declared once (typer only reads them).
DATA = typer.Option(None, "--data", help="Scene dataset folder (`spatialgen scenes make`).")
CONFIG = typer.Option(None, "--config", help=_CONFIG_HELP)
STEPS = typer.Option(None, "--steps", help="Training steps.")
BATCH_SIZE = typer.Option(None, "--batch-size", help="Batch size.")
MAX_SCENES = typer.Option(None, "--max-scenes", help="Use only the first N scenes.")
CHECKPOINT_EVERY = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints.")
SEED = typer.Option(None, "--seed", help="Training seed.")
RESUME = typer.Option(None, "--resume", help=_RESUME_HELP)
CPU = typer.Option(False, "--cpu", help=_CPU_HELP)

train_app = typer.Typer(
    help="Train models: the embedded base model, the scene recogniser and estimator.", no_args_is_help=True
)


@train_app.command("base")
@friendly_errors
def train_base_command(
    data: Path | None = DATA,
    out: Path | None = typer.Option(None, "--out", help="Run folder: config, checkpoints, samples, pipeline/."),
    config: Path | None = typer.Option(None, "--config", help="A run's config.json to reproduce (flags override it)."),
    vae_steps: int | None = typer.Option(None, "--vae-steps", help="VAE training steps."),
    diffusion_steps: int | None = typer.Option(None, "--diffusion-steps", help="UNet + text encoder steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size per process."),
    max_scenes: int | None = MAX_SCENES,
    checkpoint_every: int | None = CHECKPOINT_EVERY,
    seed: int | None = SEED,
    resume: str | None = RESUME,
    stop_after: int | None = typer.Option(
        None,
        "--stop-after",
        help="Stop the UNet stage after this step's checkpoint; continue with --resume latest (and, if wanted, "
        "other --diffusion-steps).",
    ),
    cpu: bool = CPU,
) -> None:
    """Train the embedded-style base model: VAE, then text encoder + UNet (EMA), under accelerate."""
    quiet_libraries()
    from ..models.training import BaseTrainConfig, train_base

    overrides = {
        "data": str(data) if data else None,
        "out": str(out) if out else None,
        "vae_steps": vae_steps,
        "diffusion_steps": diffusion_steps,
        "batch_size": batch_size,
        "max_scenes": max_scenes,
        "checkpoint_every": checkpoint_every,
        "seed": seed,
    }
    if config is not None:
        if not config.is_file():
            raise FileNotFoundError(f"--config {str(config)!r} does not exist")
        cfg = BaseTrainConfig.from_file(config, **overrides)
    else:
        if data is None or out is None:
            raise ValueError("pass --data DIR and --out DIR (or --config RUN/config.json)")
        cfg = BaseTrainConfig(**{k: v for k, v in overrides.items() if v is not None}).validate()
    pipeline = train_base(cfg, resume=resume, cpu=cpu, stop_after=stop_after)
    if pipeline is None:
        console.print(
            f"stopped after UNet step {stop_after}; continue with: spatialgen train base --config "
            f"{Path(cfg.out) / 'config.json'} --resume latest"
        )
        return
    console.print(f"trained pipeline written to {pipeline}; try: spatialgen generate 'a red cube' --model {pipeline}")


def build_config(config_class: type, config: Path | None, **flags: Any) -> Any:
    """The training config of a ``train`` subcommand: ``--config`` (a run's ``config.json``) when given, with
    every flag the user set overriding it; otherwise the flags, each unset one taking the dataclass default."""
    import json

    def plain(value: Any) -> Any:  # paths as the JSON config stores them
        return (
            [plain(v) for v in value] if isinstance(value, list) else str(value) if isinstance(value, Path) else value
        )

    overrides = {k: plain(v) for k, v in flags.items() if v is not None and v != []}
    known = {f.name for f in dataclasses.fields(config_class)}
    if config is not None:
        if not config.is_file():
            raise FileNotFoundError(f"--config {str(config)!r} does not exist")
        data = json.loads(config.read_text())
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"--config {str(config)!r} has settings {unknown} that this command does not know")
        return config_class(**{**data, **overrides}).validate()
    required = [
        f.name
        for f in dataclasses.fields(config_class)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in overrides
    ]
    if required:
        flags_needed = ", ".join("--" + name.replace("_", "-") for name in required)
        raise ValueError(f"pass {flags_needed} (or --config RUN/config.json)")
    return config_class(**overrides).validate()


_DATA_FOLDERS_HELP = (
    "Scene dataset folder (`spatialgen scenes make`); repeat to train on several distributions "
    "(--max-scenes applies to each)."
)


def _load_labelled(data_class: type, folders: list[Path], max_scenes: int) -> object:
    """The first ``max_scenes`` scenes of each folder, as one dataset: a network that must read several scene
    distributions (the default world and a model's own) is trained on all of them."""

    import torch

    if not folders:
        raise ValueError("pass at least one --data folder")
    parts = [data_class.from_shards(folder, max_scenes) for folder in folders]
    return data_class(*(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(data_class)))


def _train_scene_network(kind: str, config: Path | None, **flags: Any) -> None:
    """Train the recogniser or estimator, save it, score it on held-out renders of each training distribution,
    and record how it was made (``config.json`` and ``held-out.json`` in ``--out``)."""
    import json
    import shlex

    from ..fileio import atomic_write_json, ensure_writable_dir
    from ..models.data import model_scene_config
    from ..scenes import make_sample, scene_seed

    if kind == "recogniser":
        from ..eval.scene.recogniser import SceneRecogniser as Network
        from ..eval.scene.recogniser_training import LabelledScenes as Data
        from ..eval.scene.recogniser_training import score_recogniser as score
        from ..eval.scene.recogniser_training import train_recogniser as train
        from ..eval.scene.scene_networks import RecogniserTrainConfig as Config
    else:
        from ..eval.scene.scene_estimator import IntrinsicTargets as Data
        from ..eval.scene.scene_estimator import SceneEstimator as Network
        from ..eval.scene.scene_estimator import score_estimator as score
        from ..eval.scene.scene_estimator import train_estimator as train
        from ..eval.scene.scene_networks import EstimatorTrainConfig as Config
    cfg = build_config(Config, config, **flags)
    out, folders = ensure_writable_dir(cfg.out), [Path(d) for d in cfg.data]
    atomic_write_json(out / "config.json", dataclasses.asdict(cfg))
    start = None if cfg.init is None else Network.load(None if cfg.init == "embedded" else cfg.init)
    data = _load_labelled(Data, folders, cfg.max_scenes)
    network = train(data, cfg.steps, cfg.batch_size, lr=cfg.lr, seed=cfg.seed, init=start)
    network.save(out)
    by_data = {}
    for folder in folders:  # held-out scenes of each training distribution
        manifest = json.loads((folder / "manifest.json").read_text())
        scene_config = model_scene_config({"data": manifest["params"]}, max_objects=None)
        held = [
            make_sample(scene_seed(cfg.held_out_seed, i), network.resolution, scene_config) for i in range(cfg.held_out)
        ]
        by_data[str(folder)] = score(network, held)
    record = {
        **by_data[str(folders[0])],
        "held_out_by_data": by_data,
        "held_out_seed": cfg.held_out_seed,
        "held_out": cfg.held_out,
        "training": dataclasses.asdict(cfg),
        "command": f"spatialgen train {kind} {' '.join(f'--data {shlex.quote(str(d))}' for d in folders)} "
        f"--out {shlex.quote(str(out))} "
        f"--steps {cfg.steps} --batch-size {cfg.batch_size} --max-scenes {cfg.max_scenes} --seed {cfg.seed}"
        f" --lr {cfg.lr:g}" + (f" --init {shlex.quote(cfg.init)}" if cfg.init else ""),
    }
    atomic_write_json(out / "held-out.json", record)
    console.print(json.dumps(by_data, indent=2), highlight=False)


def _scene_network_command(kind: str, doc: str) -> Any:
    """The ``train recogniser`` / ``train estimator`` command: the same options, another network."""

    def command(
        data: list[Path] | None = typer.Option(None, "--data", help=_DATA_FOLDERS_HELP),
        out: Path | None = typer.Option(None, "--out", help=f"Folder for {kind}.safetensors and {kind}.json."),
        config: Path | None = CONFIG,
        steps: int | None = STEPS,
        batch_size: int | None = BATCH_SIZE,
        max_scenes: int | None = typer.Option(None, "--max-scenes", help="Use only the first N scenes of each folder."),
        held_out: int | None = typer.Option(None, "--held-out", help=_HELD_OUT_HELP),
        held_out_seed: int | None = typer.Option(None, "--held-out-seed", help="Dataset seed of the held-out scenes."),
        seed: int | None = SEED,
        lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
        init: str | None = typer.Option(None, "--init", help=_INIT_HELP),
    ) -> None:
        _train_scene_network(
            kind,
            config,
            data=data,
            out=out,
            steps=steps,
            batch_size=batch_size,
            max_scenes=max_scenes,
            held_out=held_out,
            held_out_seed=held_out_seed,
            seed=seed,
            lr=lr,
            init=init,
        )

    command.__doc__ = doc
    command.__name__ = f"train_{kind}_command"
    return friendly_errors(command)


train_app.command("recogniser")(
    _scene_network_command(
        "recogniser", "Train the scene-world object recogniser on exact labels and print its held-out accuracy."
    )
)
train_app.command("estimator")(
    _scene_network_command(
        "estimator",
        "Train the scene-world depth and normal estimator on exact intrinsics and print its held-out accuracy.",
    )
)


@train_app.command("vae-decoder")
@friendly_errors
def train_vae_decoder_command(
    data: Path | None = DATA,
    out: Path | None = typer.Option(None, "--out", help="Run folder: config, checkpoints, pipeline/, held-out.json."),
    config: Path | None = CONFIG,
    base: str | None = typer.Option(None, "--base", help="Pipeline whose decoder is fine-tuned."),
    steps: int | None = STEPS,
    batch_size: int | None = BATCH_SIZE,
    lr: float | None = typer.Option(None, "--lr", help="Learning rate."),
    max_scenes: int | None = typer.Option(None, "--max-scenes", help="Use only the first N scenes [default: all]."),
    checkpoint_every: int | None = CHECKPOINT_EVERY,
    seed: int | None = SEED,
    resume: str | None = RESUME,
    cpu: bool = CPU,
) -> None:
    """Fine-tune a pipeline's VAE decoder with the encoder frozen: sharper images in the same latent space."""
    quiet_libraries()
    import json

    from ..models.decoder_training import DecoderFinetuneConfig, train_vae_decoder

    cfg = build_config(
        DecoderFinetuneConfig,
        config,
        data=data,
        out=out,
        base=base,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_scenes=max_scenes,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    folder = train_vae_decoder(cfg, resume=resume, cpu=cpu)
    console.print(json.dumps(json.loads((Path(cfg.out) / "held-out.json").read_text()), indent=2), highlight=False)
    console.print(f"pipeline with the fine-tuned decoder written to {folder}", highlight=False)


@train_app.command("intrinsic-vae")
@friendly_errors
def train_intrinsic_vae_command(
    data: Path | None = DATA,
    out: Path | None = typer.Option(
        None, "--out", help="Run folder: config, checkpoints, intrinsic_vae/, held-out.json."
    ),
    config: Path | None = CONFIG,
    base: str | None = typer.Option(None, "--base", help="Pipeline whose VAE is widened."),
    steps: int | None = STEPS,
    batch_size: int | None = BATCH_SIZE,
    mask_p: float | None = typer.Option(None, "--mask-p", help="Probability of zeroing each intrinsic of the input."),
    max_scenes: int | None = MAX_SCENES,
    checkpoint_every: int | None = CHECKPOINT_EVERY,
    seed: int | None = SEED,
    resume: str | None = RESUME,
    cpu: bool = CPU,
) -> None:
    """Widen the base VAE to the 8 packed intrinsic channels and fine-tune it with input masking (I-LDM 3.2)."""
    quiet_libraries()
    import json

    from ..ildm.vae_training import IntrinsicVAEConfig, train_intrinsic_vae

    cfg = build_config(
        IntrinsicVAEConfig,
        config,
        data=data,
        out=out,
        base=base,
        steps=steps,
        batch_size=batch_size,
        mask_p=mask_p,
        max_scenes=max_scenes,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    folder = train_intrinsic_vae(cfg, resume=resume, cpu=cpu)
    console.print(json.dumps(json.loads((Path(cfg.out) / "held-out.json").read_text()), indent=2), highlight=False)
    console.print(f"intrinsic VAE written to {folder}", highlight=False)


@train_app.command("ildm")
@friendly_errors
def train_ildm_command(
    data: Path | None = DATA,
    out: Path | None = typer.Option(None, "--out", help="Run folder: config, checkpoints, samples/, pipeline/."),
    intrinsic_vae: Path | None = typer.Option(
        None, "--intrinsic-vae", help="`train intrinsic-vae` output (RUN/intrinsic_vae)."
    ),
    config: Path | None = CONFIG,
    base: str | None = typer.Option(None, "--base", help="Base pipeline."),
    rank: int | None = typer.Option(None, "--rank", help="LoRA rank of the intrinsic domain."),
    placement: str | None = typer.Option(
        None,
        "--placement",
        help="Where the LoRA sits, comma-separated: self-attention (the paper), cross-attention, feed-forward, "
        "resnets, conv-io; partner-input adds a convolution of the image latent to the maps' input.",
    ),
    p_image_clean: float | None = typer.Option(
        None, "--p-image-clean", help="Share of pairs with the image held clean (teaches reading a given image)."
    ),
    p_intrinsic_clean: float | None = typer.Option(
        None, "--p-intrinsic-clean", help="Share of pairs with the intrinsics held clean (teaches following them)."
    ),
    p_independent: float | None = typer.Option(
        None, "--p-independent", help="Share of pairs with independent timesteps (for lagged co-generation)."
    ),
    loss_lambda: float | None = typer.Option(None, "--lambda", help="Weight of the intrinsic term of Eq. 5."),
    steps: int | None = STEPS,
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Pairs per batch (the joint batch is twice as large)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate of the LoRA."),
    ema_decay: float | None = typer.Option(None, "--ema-decay", help="Keep (and ship) an EMA of the LoRA weights."),
    max_scenes: int | None = MAX_SCENES,
    intrinsic_resolution: int | None = typer.Option(
        None,
        "--intrinsic-resolution",
        help="Train on maps coarsened to this side and scaled back (robustness to coarse estimators).",
    ),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", help="Steps between checkpoints and sample grids."
    ),
    seed: int | None = SEED,
    resume: str | None = RESUME,
    cpu: bool = CPU,
) -> None:
    """Train I-LDM's intrinsic domain (LoRA, Eq. 5) on a base pipeline; optionally also to read and follow maps."""
    quiet_libraries()
    from ..ildm.training import ILDMTrainConfig, train_ildm

    cfg = build_config(
        ILDMTrainConfig,
        config,
        data=data,
        out=out,
        intrinsic_vae=intrinsic_vae,
        base=base,
        rank=rank,
        placement=[p.strip() for p in placement.split(",") if p.strip()] if placement else None,
        p_image_clean=p_image_clean,
        p_intrinsic_clean=p_intrinsic_clean,
        p_independent=p_independent,
        loss_lambda=loss_lambda,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        ema_decay=ema_decay,
        max_scenes=max_scenes,
        intrinsic_resolution=intrinsic_resolution,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    folder = train_ildm(cfg, resume=resume, cpu=cpu)
    console.print(
        f"I-LDM pipeline written to {folder}; try: spatialgen generate 'a red cube' --method ildm --model {folder}"
    )


@train_app.command("ilora")
@friendly_errors
def train_ilora_command(
    data: Path | None = DATA,
    out: Path | None = typer.Option(None, "--out", help="Run folder: config, checkpoints, adapter/, held-out.json."),
    config: Path | None = CONFIG,
    intrinsic: str | None = typer.Option(None, "--intrinsic", help="normal, depth, albedo or shading."),
    variant: str | None = typer.Option(
        None, "--variant", help="single_step (one UNet call), augmented (multi-step, image latent on conv_in), decoder."
    ),
    base: str | None = typer.Option(None, "--base", help="Base pipeline: 'embedded', a folder or a hub id."),
    rank: int | None = typer.Option(None, "--rank", help="LoRA rank (paper: 8)."),
    layers: str | None = typer.Option(None, "--layers", help="Attention the LoRA sits on: both, self or cross."),
    decoder_rank: int | None = typer.Option(
        None,
        "--decoder-rank",
        help="UNet variants: rank of a LoRA on the VAE decoder that learns to draw the intrinsic (0: the base "
        "decoder, as the paper; a VAE that never saw such maps needs one).",
    ),
    steps: int | None = STEPS,
    batch_size: int | None = BATCH_SIZE,
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (constant)."),
    max_scenes: int | None = typer.Option(None, "--max-scenes", help="Labelled training images: the first N scenes."),
    labels: str | None = typer.Option(
        None,
        "--labels",
        help="Supervision: 'exact', 'estimator', a scene-estimator folder, or depth:MODEL (transformers depth).",
    ),
    held_out: int | None = typer.Option(None, "--held-out", help="Held-out renders the adapter is scored on."),
    random_init: bool | None = typer.Option(
        None, "--random-init/--pretrained", help="Control experiment: a randomly initialised UNet of the same shape."
    ),
    checkpoint_every: int | None = CHECKPOINT_EVERY,
    seed: int | None = SEED,
    resume: str | None = RESUME,
    cpu: bool = CPU,
) -> None:
    """Train one Intrinsic LoRA adapter: the base model predicts an intrinsic through its own output head."""
    quiet_libraries()
    import json

    from ..ilora.training import ILoRATrainConfig, train_ilora

    cfg = build_config(
        ILoRATrainConfig,
        config,
        data=data,
        out=out,
        intrinsic=intrinsic,
        variant=variant,
        base=base,
        rank=rank,
        layers=layers,
        decoder_rank=decoder_rank,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_scenes=max_scenes,
        labels=labels,
        held_out=held_out,
        random_init=random_init,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    folder = train_ilora(cfg, resume=resume, cpu=cpu)
    console.print(json.dumps(json.loads((Path(cfg.out) / "held-out.json").read_text()), indent=2), highlight=False)
    console.print(
        f"adapter written to {folder}; try: spatialgen intrinsics extract --images DIR --out DIR --lora {folder}",
        highlight=False,
    )


@train_app.command("esplora")
@friendly_errors
def train_esplora_command(
    data: list[Path] | None = typer.Option(
        None, "--data", help="Scene dataset, or a folder of images with NAME.txt captions; repeat for several."
    ),
    out: Path | None = typer.Option(None, "--out", help="Run folder: config, checkpoints, lora/."),
    config: Path | None = CONFIG,
    base: str | None = typer.Option(None, "--base", help="Base pipeline: 'embedded', a folder or a hub id."),
    rank: int | None = typer.Option(None, "--rank", help="LoRA rank on the UNet's attention."),
    text_encoder_rank: int | None = typer.Option(
        None, "--text-encoder-rank", help="LoRA rank on the text encoder (0: off)."
    ),
    flip: str | None = typer.Option(None, "--flip", help="mirror (flip images and mirror their captions) or off."),
    steps: int | None = STEPS,
    batch_size: int | None = BATCH_SIZE,
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (constant)."),
    max_items: int | None = typer.Option(None, "--max-items", help="Use at most N pairs of each folder."),
    checkpoint_every: int | None = CHECKPOINT_EVERY,
    seed: int | None = SEED,
    resume: str | None = RESUME,
    cpu: bool = CPU,
) -> None:
    """Train a spatial LoRA (ESPLoRA) on captions whose relations hold in their images."""
    quiet_libraries()
    from ..esplora.training import ESPLoRAConfig, train_esplora

    cfg = build_config(
        ESPLoRAConfig,
        config,
        data=data,
        out=out,
        base=base,
        rank=rank,
        text_encoder_rank=text_encoder_rank,
        flip=flip,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        max_items=max_items,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    folder = train_esplora(cfg, resume=resume, cpu=cpu)
    console.print(f"spatial LoRA written to {folder}; try: spatialgen generate PROMPT --lora {folder}", highlight=False)
