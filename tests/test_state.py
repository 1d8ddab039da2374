"""The state object: what it stores and what older objects load as."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from handlers.model.state import State, initial_state
from handlers.runtime.catalogs import default_catalog

_MAGIC = b"STOCKPULSE-STATE\x00"


def _without(data: bytes, name: str) -> bytes:
    """``data`` re-encoded as an object written before array ``name`` existed."""
    raw = zlib.decompress(data[len(_MAGIC) :])
    (size,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + size])
    header["arrays"] = [a for a in header["arrays"] if a[0] != name]
    head = json.dumps(header).encode()
    return _MAGIC + zlib.compress(struct.pack("<I", len(head)) + head + raw[4 + size :], 1)


def test_a_state_written_before_the_forecast_spread_was_kept_loads_with_nan():
    """GIVEN a state object without score_forecast_std WHEN it is loaded THEN the spread is NaN
    (unknown) for every series and everything else is as stored."""
    state = initial_state(default_catalog(), 1_767_571_200.0)
    old = State.from_bytes(_without(state.to_bytes(), "score_forecast_std"))
    assert old.score_forecast_std.shape == (state.num_series,)
    assert np.isnan(old.score_forecast_std).all()
    assert np.array_equal(old.on_hand, state.on_hand)
    assert State.from_bytes(state.to_bytes()).score_forecast_std.tolist() == [0.0] * state.num_series


def _header_without(data: bytes, name: str) -> bytes:
    raw = zlib.decompress(data[len(_MAGIC) :])
    (size,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + size])
    del header[name]
    head = json.dumps(header).encode()
    return _MAGIC + zlib.compress(struct.pack("<I", len(head)) + head + raw[4 + size :], 1)


def test_a_state_written_before_conflicts_were_counted_loads_with_zero_conflicts():
    """GIVEN a state object without the conflicts counters WHEN it is loaded THEN every handler has
    0 conflicts; a stored count survives a round trip, keyed by handler name."""
    state = initial_state(default_catalog(), 1_767_571_200.0)
    assert State.from_bytes(_header_without(state.to_bytes(), "conflicts")).conflicts == {
        "order_tick": 0,
        "restock": 0,
        "forecast": 0,
        "alert": 0,
    }
    counted = state.replace(conflicts={**state.conflicts, "forecast": 7})
    assert State.from_bytes(counted.to_bytes()).conflicts["forecast"] == 7
