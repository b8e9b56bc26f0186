"""Evaluation: spatial benchmarks' scorers, detectors and depth estimators, quality and intrinsic metrics, reports.

Scorers are pure functions of detections (:mod:`.visor`, :mod:`.t2i_compbench`, :mod:`.geneval`,
:mod:`.relations3d`); detectors (:mod:`.detectors`) and depth estimators (:mod:`.depth`) feed
them; :mod:`.spatial_eval` runs them all over a folder of images, resumably, for
``spatialgen eval spatial``. Heavy modules are imported on use, so this package stays light.
"""

from .detections import Detector, ObjectDetection, box_iou, by_label
from .recogniser import CLASSES, Detection, SceneRecogniser

__all__ = ["CLASSES", "Detection", "Detector", "ObjectDetection", "SceneRecogniser", "box_iou", "by_label"]
