"""Spatial caption curation (ESPLoRA, papers/004): keep the captions whose relations hold in their image,
synthesise them where none is stated, at any scale (locally, or on Ray Data with the same code)."""

from .curation import CurationRules, Curator
from .engine import CurationSettings, curate
from .sources import InputShard, list_shards, read_shard

__all__ = ["CurationRules", "CurationSettings", "Curator", "InputShard", "curate", "list_shards", "read_shard"]
