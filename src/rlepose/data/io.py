"""Reading images: one function that every path into the library uses (datasets, photos,
the predictor), with the checks that keep a bad file from crashing or exhausting memory."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["DataError", "MAX_IMAGE_PIXELS", "header_size", "read_image"]


class DataError(ValueError):
    """Bad input data; the message names the file and the record."""


# Decoding allocates width × height × 3 bytes before reading any pixel data, so a small file whose
# header claims a huge image (a "decompression bomb") is refused from its header (Pillow's limit).
MAX_IMAGE_PIXELS = 178_956_970


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, None for other formats or unreadable headers."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
            i += 2 + length
    return None


def read_image(path: Path, record: str = "", bgr: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3) (OpenCV's BGR with ``bgr``, which saves converting a whole image that
    is then only cropped), EXIF orientation applied; grayscale, 16-bit and alpha images are
    converted. Raises DataError for a missing, undecodable or implausibly large file."""
    where = f" (record {record})" if record else ""
    if not path.is_file():
        raise DataError(f"image not found: {path}{where}")
    data = np.fromfile(str(path), dtype=np.uint8)
    size = header_size(data[:262144].tobytes())
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise DataError(f"image {path}{where}: its header says {size[0]}×{size[1]} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS:,} allowed (rlepose.data.io.MAX_IMAGE_PIXELS)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"cannot decode image {path}{where}: corrupt or not an image")
    return image if bgr else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
