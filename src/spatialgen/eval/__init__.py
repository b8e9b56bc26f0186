"""Evaluation: the scene-world recogniser (a detector with exact training labels) and scorers."""

from .recogniser import CLASSES, Detection, SceneRecogniser

__all__ = ["CLASSES", "Detection", "SceneRecogniser"]
