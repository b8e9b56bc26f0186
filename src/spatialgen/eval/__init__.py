"""Evaluation: spatial benchmarks' scorers, detectors and depth estimators, quality and intrinsic metrics, reports.

One subpackage per concern:

* :mod:`.scorers`: the benchmarks' rules as pure functions of detections (VISOR, T2I-CompBench,
  GenEval, 3D relations);
* :mod:`.detection`: the detection type, detector adapters and depth estimators that feed them;
* :mod:`.metrics`: image quality, intrinsic accuracy, preference models;
* :mod:`.prompts`: prompt sets and reading (A, relation, B) back from a prompt or record;
* :mod:`.runs`: image sets, run folders, reports and the runners behind ``spatialgen eval``;
* :mod:`.scene`: the scene world's recogniser and estimator, with their training.

Heavy modules are imported on use, so this package stays light.
"""

from .detection.detections import Detector, ObjectDetection, box_iou, by_label
from .scene.recogniser import CLASSES, Detection, SceneRecogniser

__all__ = ["CLASSES", "Detection", "Detector", "ObjectDetection", "SceneRecogniser", "box_iou", "by_label"]
