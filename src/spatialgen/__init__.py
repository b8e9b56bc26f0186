"""spatialgen: spatially consistent text-to-image generation with latent diffusion models."""

__version__ = "0.1.0"
