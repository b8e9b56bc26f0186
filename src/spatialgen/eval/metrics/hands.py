"""The I-LDM paper's hands experiment: the share of images of "hands" prompts in which a hand is detected.

Detection is MediaPipe's hand landmarker (the Tasks API), with a ``hand_landmarker.task`` model
file the user has: no MediaPipe wheel that installs beside this project's numpy ships one (the
0.10.x wheels bundled the legacy hand models but pin numpy < 2 and protobuf < 5; the 1.x wheels
bundle none), and nothing is downloaded at run time. ``pip install 'spatialgen[hands]'`` brings
MediaPipe; the model file comes from MediaPipe's model page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Prompts about hands: the words the paper's hand prompts turn on.
HAND_WORDS = re.compile(r"\b(hands?|fingers?|holding|waving|fist|palm|thumbs?)\b", re.IGNORECASE)


def is_hand_prompt(prompt: str) -> bool:
    return bool(HAND_WORDS.search(prompt))


class HandDetector:
    """How many hands MediaPipe's hand landmarker finds in an image."""

    def __init__(self, task_file: str | os.PathLike[str], min_confidence: float = 0.5, max_hands: int = 4) -> None:
        path = Path(task_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"--hand-model {str(path)!r} is not a file; give MediaPipe's hand_landmarker.task (no wheel ships it)"
            )
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise ImportError("the hands experiment needs MediaPipe: pip install 'spatialgen[hands]'") from error
        options = vision.HandLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            num_hands=max_hands,
            min_hand_detection_confidence=min_confidence,
        )
        self._mp = mp
        self._landmarker = vision.HandLandmarker.create_from_options(options)

    def count(self, image: Any) -> int:
        """Hands found in a PIL image or an ``(H, W, 3)`` uint8 array."""
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image))
        found = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        return len(found.hand_landmarks)


def hand_detection_rate(count: Callable[[Any], int], images: Sequence[str | os.PathLike[str]]) -> dict[str, float]:
    """Share of images with at least one hand found (the paper's measure), and the mean hands per image."""
    from PIL import Image

    if not images:
        raise ValueError("no images to look for hands in")
    counts = []
    for path in images:
        with Image.open(path) as image:
            counts.append(count(image.convert("RGB")))
    found = np.asarray(counts)
    return {"hand_detection_rate": float((found > 0).mean()), "hands_per_image": float(found.mean())}
