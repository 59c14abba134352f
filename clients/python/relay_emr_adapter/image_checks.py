"""What the adapter checks in an image before filing it, without changing a byte of it: the
content type it supports, that the bytes are that type, and that no EXIF/GPS/XMP metadata is
left (the sender strips it before sealing; an image that still carries it is refused, never
silently rewritten, so what the EMR holds is exactly what was sealed)."""

from __future__ import annotations

import io
import struct

from PIL import Image, UnidentifiedImageError

from relay_emr_adapter.errors import Refused

SUPPORTED = frozenset({"image/jpeg", "image/png"})
_JPEG_METADATA = (b"Exif\x00", b"http://ns.adobe.com/xap/", b"http://ns.adobe.com/xmp/")
_PNG_METADATA = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_image(content_type: str, data: bytes) -> tuple[int, int]:
    """(width, height) of a supported image without metadata; ``Refused`` otherwise."""
    if content_type not in SUPPORTED:
        raise Refused("unsupported_content", "content_type")
    found = _jpeg_metadata(data) if content_type == "image/jpeg" else _png_metadata(data)
    if found:
        raise Refused("unsupported_content", "image_metadata_present")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if (image.format or "").lower() != content_type.split("/")[1]:
                raise Refused("unsupported_content", "content_type_mismatch")
            return image.size
    except (UnidentifiedImageError, OSError, ValueError):
        raise Refused("unsupported_content", "image_unreadable") from None


def _jpeg_metadata(data: bytes) -> bool:
    """True if an APP1 segment before the scan holds EXIF or XMP."""
    if not data.startswith(b"\xff\xd8"):
        raise Refused("unsupported_content", "content_type_mismatch")
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == 0xDA:  # start of scan: no metadata segments follow it
            return False
        (length,) = struct.unpack(">H", data[position + 2:position + 4])
        segment = data[position + 4:position + 2 + length]
        if marker == 0xE1 and segment.startswith(_JPEG_METADATA):
            return True
        position += 2 + length
    return False


def _png_metadata(data: bytes) -> bool:
    if not data.startswith(PNG_SIGNATURE):
        raise Refused("unsupported_content", "content_type_mismatch")
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        if kind in _PNG_METADATA:
            return True
        if kind == b"IEND":
            return False
        position += 12 + length
    return False
