"""Opening image files a user or a dataset hands us, with one kind of error for every way they fail.

PIL raises ``OSError`` for a damaged file, ``ValueError`` or ``TypeError`` for some odd headers,
``Image.DecompressionBombError`` (not an ``OSError``) for a file that declares more than twice
``Image.MAX_IMAGE_PIXELS``, and may decode a header lazily, so a 130-byte PNG declaring 200
megapixels passes ``open`` and fails later. :func:`read_image` loads the pixels at once and turns
all of these into :class:`UnreadableImage`, which data jobs count and skip and front ends show as
a sentence.
"""

from __future__ import annotations

import io
import os
from typing import Any

from PIL import Image

#: What PIL raises for a file it cannot decode (DecompressionBombError derives from Exception only).
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    TypeError,
    SyntaxError,
    Image.DecompressionBombError,
)


class UnreadableImage(ValueError):
    """An image file that cannot be decoded: damaged, not an image, or declaring too many pixels."""


def read_image(source: str | os.PathLike[str] | bytes, name: str | None = None) -> Image.Image:
    """The decoded image of a path or encoded bytes (its own mode; pixels loaded), or :class:`UnreadableImage`."""
    label = name or (f"{len(source)} bytes" if isinstance(source, bytes) else str(source))
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()  # decode now: the pixels stay when the file closes
    except Image.DecompressionBombError as error:
        raise UnreadableImage(f"{label} declares more pixels than images may have here ({error})") from error
    except FileNotFoundError:
        raise
    except DECODE_ERRORS as error:
        raise UnreadableImage(f"{label} is not a readable image ({type(error).__name__}: {error})") from error
    return image


def read_rgb(source: Any, name: str | None = None) -> Image.Image:
    """:func:`read_image` converted to RGB."""
    return read_image(source, name).convert("RGB")
