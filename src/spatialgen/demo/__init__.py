"""``spatialgen demo``: a web page (Gradio) to try every method and see each image beside its intrinsics."""

from .callbacks import DemoInputError, DemoModels, DemoRequest, DemoResult, compare, describe_prompt, generate

__all__ = ["DemoInputError", "DemoModels", "DemoRequest", "DemoResult", "compare", "describe_prompt", "generate"]
