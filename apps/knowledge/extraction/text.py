"""Bytes of a text file -> one normalised str: what binary data looks like, decoding, and the
normalisation every format shares (so chunk offsets and de-duplication do not depend on the source
format).
"""

from __future__ import annotations

import re
import unicodedata

from apps.knowledge.extraction.errors import _plural, _Refused, _size

# --- what binary data looks like ---------------------------------------------------------------

# Formats people upload by mistake, by their first bytes: named in the error so the person knows
# what they sent (a .docx renamed .pdf, a screenshot saved as .txt).
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive such as .docx, .xlsx or .zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office file such as .doc or .xls"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x7fELF", "an executable"),
    (b"{\\rtf", "an RTF document"),
)

# C0 controls other than tab, line feed, vertical tab, form feed, carriage return and escape
# (escape starts the ANSI colour codes of captured terminal logs, which are text), and DEL.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
# Text has essentially none; any binary format has several percent (uniform bytes: 10.5%).
_BINARY_CONTROL_SHARE = 0.02


def _looks_like(data: bytes) -> str | None:
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            return what
    return None


def _refuse_binary(data: bytes) -> None:
    what = _looks_like(data)
    if what is not None:
        raise _Refused("binary", f"this is {what}, not text")
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > _BINARY_CONTROL_SHARE * len(data):
        nuls = data.count(0)
        detail = f"{nuls} NUL bytes" if nuls else f"{controls} control characters"
        raise _Refused("binary", f"binary data, not text ({detail} in {_size(len(data))})")


# --- decoding ----------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
# Preferred when charset-normalizer finds several 8-bit encodings equally plausible: they agree on
# most letters, and this is the one Windows and the HTML standard default to in the West.
_PREFERRED_LEGACY = "cp1252"
_SURROGATE_ESCAPES = {0xDC80 + i: "\ufffd" for i in range(128)}
_LONE_SURROGATE = re.compile("[\udc80-\udcff]")


def _decode(data: bytes, warnings: list[str], declared: str | None = None) -> str:
    """Bytes of a text file -> str, saying in ``warnings`` whatever was not plain UTF-8."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data[len(bom) :].decode(encoding, errors="replace")
            bad = text.count("\ufffd")
            if bad:
                warnings.append(f"invalid {encoding.upper()} replaced ({_plural(bad, 'character')})")
            # The byte test does not apply to UTF-16/32 (every ASCII letter has a NUL byte).
            _refuse_binary_text(text)
            return text

    _refuse_binary(data)
    if declared is not None and declared != "utf-8":
        try:
            return data.decode(declared)
        except UnicodeDecodeError:
            warnings.append(f"declared {declared} but the bytes do not match it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass

    escaped = data.decode("utf-8", errors="surrogateescape")
    invalid = len(_LONE_SURROGATE.findall(escaped))
    valid_non_ascii = len(escaped) - len(escaped.encode("ascii", "ignore")) - invalid
    # Valid multi-byte sequences almost never occur by chance in 8-bit text: if there are as many
    # as there are bad bytes, this is UTF-8 with damage, and guessing another encoding would
    # garble every correct character to save a few wrong ones.
    if valid_non_ascii < invalid:
        legacy = _detect_legacy_encoding(data)
        if legacy is not None:
            text = data.decode(legacy, errors="replace")
            warnings.append(f"not valid UTF-8; decoded as {legacy} (detected)")
            bad = text.count("\ufffd")
            if bad:
                warnings.append(f"invalid {legacy} replaced ({_plural(bad, 'character')})")
            return text
    text = escaped.translate(_SURROGATE_ESCAPES)
    if invalid > 0.1 * len(text):
        raise _Refused("binary", f"binary data, not text ({invalid} of {len(data)} bytes are not UTF-8)")
    warnings.append(f"invalid UTF-8 replaced ({_plural(invalid, 'byte')})")
    return text


def _detect_legacy_encoding(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(data) if not m.encoding.startswith(("utf", "ascii"))]
    if not matches:
        return None
    least_chaos = min(m.percent_chaos for m in matches)
    tied = [m.encoding for m in matches if m.percent_chaos <= least_chaos]
    if _PREFERRED_LEGACY in tied:
        return _PREFERRED_LEGACY
    best = tied[0]
    try:
        # Same text either way: report the encoding people know.
        if data.decode(_PREFERRED_LEGACY) == data.decode(best):
            return _PREFERRED_LEGACY
    except UnicodeDecodeError:
        pass
    return best


def _refuse_binary_text(text: str) -> None:
    controls = sum(1 for ch in text if ch < " " and ch not in "\t\n\x0b\x0c\r\x1b")
    if controls > _BINARY_CONTROL_SHARE * max(len(text), 1):
        raise _Refused("binary", f"binary data, not text ({controls} control characters)")


# --- normalisation -----------------------------------------------------------------------------

_CONTROL_CHARS = "".join(chr(c) for c in (*range(0x00, 0x09), *range(0x0E, 0x20), *range(0x7F, 0xA0)) if c != 0x85)
_DELETE_CONTROLS = str.maketrans("", "", _CONTROL_CHARS)
_CHARACTER_MAP = str.maketrans(
    {
        "\r": "\n",
        "\x0b": "\n",
        "\x0c": "\n\n",  # form feed: a page break
        "\x85": "\n",
        "\u2028": "\n",
        "\u2029": "\n\n",
        # Invisible: soft hyphen, zero-width space, byte order mark / zero-width no-break space.
        "\u00ad": None,
        "\u200b": None,
        "\ufeff": None,
        # Typographic ligatures, common in PDF text layers: "ﬁnd" must match "find".
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_BLANK_LINES = re.compile(r"\n{3,}")


def _normalise(text: str, warnings: list[str]) -> str:
    text = text.replace("\r\n", "\n")
    cleaned = text.translate(_DELETE_CONTROLS)
    removed = len(text) - len(cleaned)
    if removed:
        nuls = text.count("\x00")
        detail = f" ({nuls} NUL)" if nuls else ""
        warnings.append(f"removed {_plural(removed, 'control character')}{detail}")
    text = unicodedata.normalize("NFC", cleaned.translate(_CHARACTER_MAP))
    text = _HORIZONTAL_SPACE.sub(" ", text)
    text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()
