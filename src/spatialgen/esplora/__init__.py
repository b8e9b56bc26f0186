"""ESPLoRA (papers/004): a spatial LoRA trained on captions whose relations hold in their images.

:func:`train_esplora` trains it (flips mirror their captions), :func:`apply_spatial_lora` fuses it
into a pipeline for generation at the base's cost.
"""

from .apply import apply_spatial_lora
from .captions import mirror_caption
from .training import ESPLoRAConfig, train_esplora

__all__ = ["ESPLoRAConfig", "apply_spatial_lora", "mirror_caption", "train_esplora"]
