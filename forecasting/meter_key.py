"""What a meter id and a meter type may look like.

Ids end up in file paths (``models/<type>/<id>``) and in database queries, so the service accepts a
conservative charset everywhere rather than trying to escape its way out of every context.
"""

from __future__ import annotations

import re

from forecasting.errors import InvalidMeterKeyError

METER_ID_MAX_LENGTH = 128
METER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
METER_TYPE_PATTERN = r"^[a-z][a-z0-9_]*$"
METER_ID_RULE = (
    f"1-{METER_ID_MAX_LENGTH} characters: letters, digits, '_', '-', '.'; starting with a letter or digit"
)

_METER_ID = re.compile(METER_ID_PATTERN)


def quoted(value: str, limit: int = 40) -> str:
    """``value`` as a message may show it: cut to ``limit`` characters, quoted, control characters escaped.

    ``repr`` escapes newlines, NUL, terminal escapes and invisible direction overrides, so a hostile
    value can neither forge a log line nor reach a terminal; at most ``limit`` characters of it appear.
    """
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


def check_meter_id(meter_id: str) -> str:
    """Return ``meter_id`` unchanged, or raise if it could steer a path or a query."""
    if not (1 <= len(meter_id) <= METER_ID_MAX_LENGTH) or not _METER_ID.fullmatch(meter_id):
        raise InvalidMeterKeyError(f"Invalid meter_id: use {METER_ID_RULE}.")
    return meter_id


def check_meter_type(meter_type: str, known_types: list[str]) -> str:
    """Return ``meter_type`` if it is one the service is configured for."""
    if meter_type not in known_types:
        raise InvalidMeterKeyError(
            f"Unknown meter_type {quoted(meter_type)}: use one of {', '.join(known_types)}."
        )
    return meter_type
