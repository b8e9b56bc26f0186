"""Installing the intrinsic domain into a diffusers backbone: peft LoRA on attn1 + cross-domain processors.

The LoRA layers are real peft layers injected with :func:`peft.inject_adapter_in_model` under the
adapter name ``intrinsic``, so the weights save and load in peft's format
(``get_peft_model_state_dict`` / ``set_peft_model_state_dict``, an ``adapter_config.json``) and can
be inspected with peft's tools. The cross-domain processors, not peft's forward, decide which
samples get them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .attention import ADAPTER, CrossDomainAttnProcessor, CrossDomainState
from .blocks import block_numbers

LORA_WEIGHTS = "intrinsic_lora.safetensors"
LORA_CONFIG = "adapter_config.json"
PARTNER_WEIGHTS = "partner_input.safetensors"
PARTNER_MODULE = "spatialgen_partner_input"  # its parameters' prefix in the denoiser's state dict
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")

#: Where the intrinsic domain's LoRA may sit, by name: the paper's self-attention, and what a small
#: backbone may need beyond it (its convolutions are otherwise the frozen image model's). Patterns are
#: matched in full against module names; ``conv-io`` also names PixArt's patch embedding and output layer.
PLACEMENTS: dict[str, str] = {
    "self-attention": "",  # built from ``targets`` by _self_attention_pattern
    "cross-attention": r".*attn2\.(to_q|to_k|to_v|to_out\.0)",
    "feed-forward": r".*\.ff\.net\.(0\.proj|2)",
    "resnets": r".*resnets\.\d+\.(conv1|conv2)",
    "conv-io": r"(conv_in|conv_out|pos_embed\.proj|proj_out)",
    "partner-input": "",  # not a LoRA: a zero-initialised convolution of the partner image latent (below)
}
DEFAULT_PLACEMENT = ("self-attention",)


def _self_attention_pattern(targets: Sequence[str]) -> str:
    allowed = set(DEFAULT_TARGETS)
    unknown = [t for t in targets if t not in allowed]
    if unknown or not targets:
        raise ValueError(f"LoRA targets must be a non-empty subset of {DEFAULT_TARGETS}, got {list(targets)}")
    names = "|".join(t.replace(".", r"\.") for t in targets)
    return rf".*attn1\.({names})"


def check_placement(placement: Sequence[str]) -> tuple[str, ...]:
    """The placement as a tuple in canonical order; raises on unknown names or a missing self-attention."""
    unknown = [p for p in placement if p not in PLACEMENTS]
    if unknown:
        raise ValueError(f"unknown LoRA placement {unknown}; choose from {', '.join(PLACEMENTS)}")
    if "self-attention" not in placement:
        raise ValueError("the placement must include self-attention: cross-domain attention lives there")
    return tuple(p for p in PLACEMENTS if p in placement)


def _target_pattern(targets: Sequence[str], placement: Sequence[str] = DEFAULT_PLACEMENT) -> str:
    """One regular expression (peft matches it in full against module names) for the chosen placement."""
    patterns = [_self_attention_pattern(targets)]
    patterns += [PLACEMENTS[p] for p in check_placement(placement) if PLACEMENTS[p]]
    return "|".join(f"(?:{p})" for p in patterns) if len(patterns) > 1 else patterns[0] + "$"


def install_cross_domain(
    model: torch.nn.Module,
    state: CrossDomainState | None = None,
    rank: int = 32,
    alpha: float | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    init_lora_weights: bool | str = True,
    freeze_base: bool = True,
    placement: Sequence[str] = DEFAULT_PLACEMENT,
) -> CrossDomainState:
    """Give ``model`` an intrinsic domain: LoRA (rank, alpha) and cross-domain processors on its attn1 layers.

    ``placement`` says where else the intrinsic LoRA sits (:data:`PLACEMENTS`): the paper puts it
    on self-attention only; a small UNet whose every convolution is the image model's may need it in
    its ResNet convolutions, ``conv_in`` / ``conv_out``, cross-attention or feed-forward layers too.
    Outside attn1 the LoRA acts on the intrinsic rows of a joint batch only (a forward hook reads the
    state's layout), so the image domain stays the base model everywhere.

    ``partner-input`` (beyond the paper, JointDiT's "joint connection" at the input): the intrinsic
    rows' first convolution also reads their partner's image latent, position by position, through a
    zero-initialised convolution of the same shape. Self-attention has no positional encoding, so
    matching an intrinsic token to the image token at the same place must otherwise be learnt from
    content alone; this gives the intrinsic domain the image's layout directly.

    Returns the shared state that the pipeline or trainer drives. With ``init_lora_weights=True``
    peft initialises B = 0, so a freshly installed domain starts as the base model.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive, got {rank}")
    placement = check_placement(placement)
    state = state if state is not None else CrossDomainState()
    numbers = block_numbers(model)
    if not numbers:
        raise ValueError(f"{type(model).__name__} has no self-attention (attn1) layers to make cross-domain")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=_target_pattern(targets, placement),
        init_lora_weights=init_lora_weights,
    )
    inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    processors = dict(model.attn_processors)
    for name, block in numbers.items():
        processors[name] = CrossDomainAttnProcessor(state, block)
    model.set_attn_processor(processors)
    _route_to_intrinsic_rows(model, state)
    if "partner-input" in placement:
        _install_partner_input(model, state)
    if freeze_base:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(_is_intrinsic_parameter(name))
    model.spatialgen_lora_config = {
        "rank": rank,
        "alpha": config.lora_alpha,
        "targets": list(targets),
        "placement": list(placement),
    }
    return state


def _route_to_intrinsic_rows(model: torch.nn.Module, state: CrossDomainState) -> list[str]:
    """Outside attn1, take the intrinsic adapter out of peft's forward and add it back on intrinsic rows only.

    attn1's projections are applied by the cross-domain processor itself (it calls the base layer
    and adds the LoRA per domain), so only the other LoRA layers need this. Returns their names.
    """
    from peft.tuners.lora import LoraLayer

    routed = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or ADAPTER not in module.lora_A or ".attn1." in f".{name}.":
            continue
        module._active_adapter = [a for a in module.active_adapters if a != ADAPTER]
        module.register_forward_hook(_intrinsic_rows_hook(state))
        routed.append(name)
    return routed


def _intrinsic_rows_hook(state: CrossDomainState):
    from .projections import add_lora, lora_delta

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        layout = state.layout
        if layout is None:
            return output  # no joint batch: the base model
        x = args[0]
        layout.check(x.shape[0])
        n = layout.stacked_n
        if n is not None:  # cat([images, intrinsics]): a slice, not a gather
            delta = lora_delta(module, x[n:], ADAPTER)
            return torch.cat([output[:n], output[n:] + delta.to(output.dtype)])
        return add_lora(output, module, x, layout.intrinsic_rows, ADAPTER)

    return hook


def _is_intrinsic_parameter(name: str) -> bool:
    return f".lora_A.{ADAPTER}." in name or f".lora_B.{ADAPTER}." in name or name.startswith(f"{PARTNER_MODULE}.")


def lora_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The intrinsic domain's trainable parameters: its LoRA weights (and the partner input, when installed)."""
    return [p for n, p in model.named_parameters() if _is_intrinsic_parameter(n)]


def _input_convolution(model: torch.nn.Module) -> torch.nn.Conv2d:
    """The denoiser's first convolution on the latents: a UNet's ``conv_in``, PixArt's patch embedding."""
    conv = getattr(model, "conv_in", None) or getattr(getattr(model, "pos_embed", None), "proj", None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no conv_in or pos_embed.proj for the partner input")
    return conv


def _install_partner_input(model: torch.nn.Module, state: CrossDomainState) -> None:
    conv = _input_convolution(model)
    base = getattr(conv, "base_layer", conv)
    partner = torch.nn.Conv2d(
        base.in_channels, base.out_channels, base.kernel_size, base.stride, base.padding, bias=False
    ).to(base.weight.device, base.weight.dtype)
    torch.nn.init.zeros_(partner.weight)  # starts as the paper's model
    model.add_module(PARTNER_MODULE, partner)

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        layout = state.layout
        if layout is None:
            return output
        x = args[0]
        layout.check(x.shape[0])
        n = layout.stacked_n
        if n is not None:
            return torch.cat([output[:n], output[n:] + partner(x[:n]).to(output.dtype)])
        rows = layout.intrinsic_rows
        return output.index_add(0, rows, partner(x[layout.partner[rows]]).to(output.dtype))

    conv.register_forward_hook(hook)


def save_intrinsic_lora(model: torch.nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write the intrinsic LoRA in peft's format (safetensors + adapter_config.json), atomically."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save as save_bytes

    from ..fileio import atomic_write_bytes, atomic_write_json

    settings = getattr(model, "spatialgen_lora_config", None)
    if settings is None:
        raise ValueError("this model has no intrinsic domain installed (install_cross_domain)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    atomic_write_bytes(folder / LORA_WEIGHTS, save_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()}))
    peft_config = {
        "peft_type": "LORA",
        "r": settings["rank"],
        "lora_alpha": settings["alpha"],
        "target_modules": _target_pattern(settings["targets"], settings["placement"]),
        "spatialgen_targets": settings["targets"],
        "spatialgen_placement": settings["placement"],
    }
    atomic_write_json(folder / LORA_CONFIG, peft_config)
    partner = getattr(model, PARTNER_MODULE, None)
    if partner is not None:
        weights = {k: v.detach().cpu().contiguous() for k, v in partner.state_dict().items()}
        atomic_write_bytes(folder / PARTNER_WEIGHTS, save_bytes(weights))
    return folder


def load_intrinsic_lora(
    model: torch.nn.Module, folder: str | os.PathLike[str], state: CrossDomainState | None = None
) -> CrossDomainState:
    """Install the intrinsic domain on ``model`` from a folder written by :func:`save_intrinsic_lora`."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / LORA_CONFIG, folder / LORA_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"no intrinsic LoRA in {str(folder)!r} (expected {LORA_CONFIG} and {LORA_WEIGHTS})")
    config = json.loads(config_path.read_text())
    state = install_cross_domain(
        model,
        state,
        rank=config["r"],
        alpha=config["lora_alpha"],
        targets=config["spatialgen_targets"],
        placement=config.get("spatialgen_placement", DEFAULT_PLACEMENT),  # folders from before placements
    )
    result = set_peft_model_state_dict(model, load_file(str(weights_path)), adapter_name=ADAPTER)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if missing:
        raise ValueError(f"the LoRA in {str(folder)!r} does not fit this model (unexpected keys: {missing[:3]})")
    partner = getattr(model, PARTNER_MODULE, None)
    if partner is not None:
        if not (folder / PARTNER_WEIGHTS).is_file():
            raise FileNotFoundError(f"{str(folder)!r} names a partner input but has no {PARTNER_WEIGHTS}")
        partner.load_state_dict(load_file(str(folder / PARTNER_WEIGHTS)))
    return state


def load_image_lora(
    model: torch.nn.Module,
    state: CrossDomainState,
    lora: str | os.PathLike[str] | dict[str, torch.Tensor],
    adapter_name: str = "image",
    scale: float = 1.0,
) -> list[str]:
    """Load an SD LoRA (diffusers, peft or kohya format) that acts on the image domain only.

    The paper's hand experiment adds a LoRA to the image model while the intrinsic domain keeps
    the base. diffusers loads and converts the file into peft layers named ``adapter_name``;
    peft's own forward is then told to skip it everywhere, and it is added back on the image
    rows only: by the cross-domain processor in ``attn1``, by a forward hook elsewhere. Returns
    the names of the layers it reached.
    """
    from diffusers import StableDiffusionPipeline
    from peft.tuners.lora import LoraLayer

    if adapter_name == ADAPTER:
        raise ValueError(f"the adapter name {ADAPTER!r} is the intrinsic domain's; choose another")
    state_dict, alphas = StableDiffusionPipeline.lora_state_dict(lora)
    model.load_lora_adapter(state_dict, network_alphas=alphas, prefix="unet", adapter_name=adapter_name)
    reached = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or adapter_name not in module.lora_A:
            continue
        # peft's own forward applies neither adapter: each is added on its own domain's rows
        module._active_adapter = [a for a in module.active_adapters if a not in (adapter_name, ADAPTER)]
        if ".attn1." not in f".{name}.":
            module.register_forward_hook(_image_rows_hook(state, adapter_name, scale))
        reached.append(name)
    if not reached:
        raise ValueError("the LoRA matched no layer of this UNet; is it a LoRA for this model family?")
    state.image_adapters[adapter_name] = scale
    return reached


def _image_rows_hook(state: CrossDomainState, adapter: str, scale: float):
    from .projections import add_lora

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        return add_lora(output, module, x, state.image_rows(x.shape[0], x.device), adapter, scale)

    return hook
