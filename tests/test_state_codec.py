"""The state objects' codec (handlers/model/state.py pack/unpack): integer-valued arrays stored narrow,
loaded exactly as they were; objects written before narrowing still load."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from handlers.model.state import _MAGIC, pack, unpack

ROWS = 40_000  # above the size under which arrays are stored as they are


def _entries(blob: bytes) -> dict[str, list]:
    raw = zlib.decompress(blob[len(_MAGIC) :])
    (size,) = struct.unpack_from("<I", raw)
    return {entry[0]: entry for entry in json.loads(raw[4 : 4 + size])["arrays"]}


@pytest.mark.parametrize(
    "values, stored",
    [
        (np.arange(ROWS, dtype=float) % 60_000, "<u2"),  # counts kept as float64: today's demand by hour
        (np.arange(ROWS, dtype=np.int64) - 5, "<i4"),  # negative: not unsigned
        (np.arange(ROWS, dtype=np.int64) * 100_000, None),  # beyond int32
        (np.arange(ROWS) + 0.5, None),  # fractional
        (np.r_[np.zeros(ROWS), 0.25], None),  # fractional only after the first values
        (np.r_[np.zeros(ROWS), np.nan], None),
        (np.r_[np.zeros(ROWS), np.inf], None),
    ],
)
def test_an_array_loads_exactly_as_packed_and_is_stored_narrow_only_when_lossless(values, stored):
    """GIVEN an array WHEN packed and unpacked THEN it has its dtype, shape and values again, and it
    was stored as a narrower integer type exactly when every value fits it."""
    values = values.reshape(-1, 1) if values.size % 2 else values.reshape(2, -1)
    blob = pack({"k": 1}, {"a": values}, (("logs/x", b"payload"),))
    header, arrays, outbox = unpack(blob, key="x")
    assert arrays["a"].dtype == values.dtype and arrays["a"].shape == values.shape
    np.testing.assert_array_equal(arrays["a"], values)
    assert not arrays["a"].flags.writeable
    assert header == {"k": 1} and outbox == (("logs/x", b"payload"),)
    entry = _entries(blob)["a"]
    assert (entry[5] if len(entry) > 5 else None) == stored


def test_an_object_written_before_narrowing_still_loads():
    """GIVEN a blob in the earlier layout (five fields per array, arrays as they are) THEN it loads."""
    today = np.arange(2 * ROWS, dtype=float).reshape(-1, 2) % 7
    head = json.dumps({"k": 1, "arrays": [["today", today.dtype.str, list(today.shape), 0, today.nbytes]], "outbox": []}).encode()
    blob = _MAGIC + zlib.compress(struct.pack("<I", len(head)) + head + today.tobytes(), 1)
    _, arrays, _ = unpack(blob, key="old")
    np.testing.assert_array_equal(arrays["today"], today)
