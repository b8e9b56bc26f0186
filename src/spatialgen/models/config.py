"""Architecture of the embedded model: Stable Diffusion's classes at a size a CPU can train.

The components are exactly diffusers' ``AutoencoderKL`` and ``UNet2DConditionModel`` and
transformers' ``CLIPTextModel``, so every later feature (LoRA, attention processors, I-LDM,
InfSplign) runs unchanged on real SD checkpoints. Only the sizes below differ from SD 1.5.

The UNet mirrors SD's layout at a smaller scale: cross-attention blocks at the two finest
resolutions (16 x 16 and 8 x 8 latents), a plain block at the coarsest, so the decoder's
attention lives in ``up_blocks.1`` and ``up_blocks.2`` as in SD 1.x / 2.x. One layer per block
(two per decoder block) rather than SD's two: it halves the CPU training step (0.86 s instead
of 1.54 s at batch 32), so the decoder has four attention layers where SD has six.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class TinySDConfig:
    """Sizes of a tiny SD-architecture model. ``resolution`` is the image side in pixels."""

    resolution: int = 64
    # VAE: len(vae_channels) - 1 halvings, so 64 px -> 16 x 16 latents with three levels.
    vae_channels: tuple[int, ...] = (16, 32, 64)
    vae_layers_per_block: int = 1
    latent_channels: int = 4
    # UNet
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers_per_block: int = 1
    unet_attention_heads: int = 4
    # Text encoder
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 256
    max_length: int = 32
    # Diffusion
    num_train_timesteps: int = 1000
    prediction_type: str = "epsilon"
    # Lin et al. 2024: rescale betas so the last timestep is pure noise (SNR 0), and sample from it
    # ("trailing" spacing). Without it a model never sees pure noise in training yet starts from it
    # at sampling, which biases brightness and colour. Needs v-prediction (epsilon is undefined at SNR 0).
    zero_terminal_snr: bool = False
    timestep_spacing: str = "leading"

    def validate(self) -> TinySDConfig:
        down = 2 ** (len(self.vae_channels) - 1)
        if self.resolution <= 0 or self.resolution % (down * 2 ** (len(self.unet_channels) - 1)):
            raise ValueError(
                f"resolution {self.resolution} must be a positive multiple of "
                f"{down * 2 ** (len(self.unet_channels) - 1)} for these VAE and UNet depths"
            )
        if self.prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {self.prediction_type!r}")
        if self.zero_terminal_snr and self.prediction_type != "v_prediction":
            raise ValueError("zero_terminal_snr needs prediction_type 'v_prediction' (epsilon is undefined at SNR 0)")
        if self.timestep_spacing not in ("leading", "trailing", "linspace"):
            raise ValueError(
                f"timestep_spacing must be 'leading', 'trailing' or 'linspace', got {self.timestep_spacing!r}"
            )
        if self.text_hidden % self.text_heads or self.unet_channels[0] % self.unet_attention_heads:
            raise ValueError("text_hidden and unet_channels must be divisible by their numbers of heads")
        return self

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.vae_channels) - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinySDConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}).validate()


def vae_config(config: TinySDConfig) -> dict[str, Any]:
    n = len(config.vae_channels)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": list(config.vae_channels),
        "layers_per_block": config.vae_layers_per_block,
        "latent_channels": config.latent_channels,
        "norm_num_groups": min(32, config.vae_channels[0]),
        "sample_size": config.resolution,
        "scaling_factor": 1.0,  # measured on data after VAE training
    }


def unet_config(config: TinySDConfig) -> dict[str, Any]:
    n = len(config.unet_channels)
    return {
        "sample_size": config.latent_size,
        "in_channels": config.latent_channels,
        "out_channels": config.latent_channels,
        "down_block_types": ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1),
        "block_out_channels": list(config.unet_channels),
        "layers_per_block": config.unet_layers_per_block,
        "cross_attention_dim": config.text_hidden,
        # diffusers' historical name: for SD-style UNets this is the number of heads.
        "attention_head_dim": config.unet_attention_heads,
        "norm_num_groups": min(32, config.unet_channels[0]),
    }


def text_encoder_config(config: TinySDConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": config.text_hidden,
        "intermediate_size": config.text_intermediate,
        "num_hidden_layers": config.text_layers,
        "num_attention_heads": config.text_heads,
        "max_position_embeddings": config.max_length,
        "hidden_act": "quick_gelu",
        "pad_token_id": pad_id,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "projection_dim": config.text_hidden,
    }


def scheduler_config(config: TinySDConfig) -> dict[str, Any]:
    """SD 1.x's noise schedule (scaled linear betas), shared by training and every sampler.

    With ``zero_terminal_snr`` the betas are rescaled to reach SNR 0 (every diffusers sampler we
    offer reads ``rescale_betas_zero_snr`` from the config) and sampling starts at the last step."""
    return {
        "num_train_timesteps": config.num_train_timesteps,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": config.prediction_type,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,  # only "leading" spacing reads it; SD pipelines warn when it is not 1
        "timestep_spacing": config.timestep_spacing,
        "rescale_betas_zero_snr": config.zero_terminal_snr,
    }
