"""Line-protocol formatting: escaping per position, hostile tag values, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasting.line_protocol import format_point


def test_format_point__plain_point():
    line = format_point(
        "energy", {"meter_type": "electricity", "meter_id": "m1"}, {"consumption": 1.5}, 1_600_000_000
    )

    assert line == "energy,meter_id=m1,meter_type=electricity consumption=1.5 1600000000"


def test_format_point__escapes_measurement_comma_and_space_but_not_equals():
    line = format_point("energy use,v2=x", {"t": "a"}, {"f": 1.0}, 0)

    assert line.startswith("energy\\ use\\,v2=x,t=a ")


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("a,b", "a\\,b"),
        ("a=b", "a\\=b"),
        ("a b", "a\\ b"),
        ('quote"d', 'quote"d'),  # quotes are literal in tags
        ("' OR 1=1 --", "'\\ OR\\ 1\\=1\\ --"),
        ("../../etc/passwd", "../../etc/passwd"),
        ("zähler-Ω-電", "zähler-Ω-電"),
        ("back\\slash", "back\\slash"),  # a backslash before an ordinary character stays literal
    ],
)
def test_format_point__escapes_hostile_tag_values(value, escaped):
    line = format_point("m", {"meter_id": value}, {"f": 1.0}, 7)

    assert line == f"m,meter_id={escaped} f=1.0 7"


def test_format_point__escapes_tag_and_field_keys():
    line = format_point("m", {"meter id=x,y": "v"}, {"use kw=,": 2.0}, 1)

    assert line == "m,meter\\ id\\=x\\,y=v use\\ kw\\=\\,=2.0 1"


@pytest.mark.parametrize(
    "value",
    [
        "line\nbreak",
        "carriage\rreturn",
        "ends with backslash\\",
        "backslash\\,comma",
        "",
        "backslash\\ space",
    ],
)
def test_format_point__refuses_tag_values_line_protocol_cannot_carry(value):
    with pytest.raises(ValueError):
        format_point("m", {"meter_id": value}, {"f": 1.0}, 1)


def test_format_point__string_field_is_quoted_with_escapes():
    line = format_point("m", {"t": "a"}, {"note": 'say "hi" \\ bye\nnext'}, 1)

    assert line == 'm,t=a note="say \\"hi\\" \\\\ bye\nnext" 1'


def test_format_point__field_types():
    line = format_point("m", {}, {"f": 2.0, "i": 3, "b": True, "n": np.float64(0.1)}, 5)

    assert line == "m f=2.0,i=3i,b=true,n=0.1 5"


def test_format_point__leaves_out_missing_fields():
    line = format_point("m", {"t": "a"}, {"value": 1.25, "temperature": math.nan, "other": None}, 9)

    assert line == "m,t=a value=1.25 9"


def test_format_point__needs_a_field_with_a_value():
    with pytest.raises(ValueError, match="at least one field"):
        format_point("m", {"t": "a"}, {"value": math.nan}, 9)


def test_format_point__refuses_infinite_floats():
    with pytest.raises(ValueError, match="infinite"):
        format_point("m", {}, {"value": math.inf}, 1)
