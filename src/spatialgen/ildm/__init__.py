"""I-LDM: co-generating an image and its intrinsics through cross-domain self-attention (papers/000)."""

from .adapter import install_cross_domain, load_intrinsic_lora, lora_parameters, save_intrinsic_lora
from .attention import CrossDomainAttnProcessor, CrossDomainState, JointLayout
from .blocks import block_count, block_number, block_numbers, self_attention_layers
from .schedules import (
    ConstantSchedule,
    DropSchedule,
    GaussianSchedule,
    NoneSchedule,
    make_schedule,
    resolve_schedule,
    schedule_from_dict,
    schedule_to_dict,
)

__all__ = [
    "ConstantSchedule",
    "CrossDomainAttnProcessor",
    "CrossDomainState",
    "DropSchedule",
    "GaussianSchedule",
    "JointLayout",
    "NoneSchedule",
    "block_count",
    "block_number",
    "block_numbers",
    "install_cross_domain",
    "load_intrinsic_lora",
    "lora_parameters",
    "make_schedule",
    "resolve_schedule",
    "save_intrinsic_lora",
    "schedule_from_dict",
    "schedule_to_dict",
    "self_attention_layers",
]
