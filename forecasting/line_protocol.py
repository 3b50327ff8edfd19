"""Format points in InfluxDB line protocol.

Meter ids come from files and users, so every name and value is escaped for its place in the line.
Text that line protocol cannot carry unambiguously (line breaks in names or tags; in InfluxDB 1.x a
backslash right before an escaped character or at the end of a tag) is refused with ``ValueError``
rather than written as a different meter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = float | int | bool | str

_MEASUREMENT_SPECIALS = ", "
_KEY_SPECIALS = ",= "


def format_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None], timestamp_s: int
) -> str:
    """One line of line protocol, timestamp in seconds (write with ``precision=s``).

    Fields that are ``None`` or NaN are left out (line protocol has no null); at least one field
    must remain. Tags are sorted by key, as InfluxDB recommends for write speed.

    Raises:
        ValueError: a name or tag is empty or cannot be represented, or no field has a value.
    """
    parts = [_escape(measurement, _MEASUREMENT_SPECIALS, "measurement")]
    for key in sorted(tags):
        parts.append(
            f"{_escape(key, _KEY_SPECIALS, 'tag key')}={_escape(tags[key], _KEY_SPECIALS, 'tag value')}"
        )
    field_texts = [
        f"{_escape(key, _KEY_SPECIALS, 'field key')}={_format_field_value(value)}"
        for key, value in fields.items()
        if not _is_missing(value)
    ]
    if not field_texts:
        raise ValueError("a point needs at least one field with a value")
    return f"{','.join(parts)} {','.join(field_texts)} {int(timestamp_s)}"


def _escape(text: str, specials: str, what: str) -> str:
    if not text:
        raise ValueError(f"{what} must not be empty")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} must not contain a line break: {text[:80]!r}")
    if text.endswith("\\") or any(f"\\{special}" in text for special in specials):
        raise ValueError(f"{what} has a backslash that line protocol cannot carry: {text[:80]!r}")
    for special in specials:
        text = text.replace(special, f"\\{special}")
    return text


def _format_field_value(value: FieldValue) -> str:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if math.isinf(value):
            raise ValueError("line protocol cannot store an infinite float")
        # float() first: numpy floats are floats, but their repr is 'np.float64(...)'.
        return repr(float(value))
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"unsupported field type {type(value).__name__}")


def _is_missing(value: FieldValue | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
