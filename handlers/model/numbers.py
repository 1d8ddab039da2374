"""Numbers read from text: only ASCII digits are numbers, and no number is longer than it can mean.

Python is generous where stockpulse must not be: ``int()`` and ``float()`` take any Unicode decimal
digit (``int("٠")`` is 0), ``str.isdigit()`` is true for superscripts that ``int()`` then refuses
(``"²"``), and the JSON and YAML parsers build an ``int`` from a digit string of any length that
Python then refuses to print (more than 4,300 digits: ``ValueError: Exceeds the limit``). Every
number stockpulse reads from text — events, catalogs, settings, command-line flags — goes through
this module, and every error message shows a value with :func:`shown`, which never fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_DIGITS", "LongInteger", "decimal", "whole", "parse_int", "shown"]

#: No quantity stockpulse takes is written with more digits (the largest, a catalog seed, has 19).
MAX_DIGITS = 40
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[0-9]+")
_SPACE = " \t\r\n"


@dataclass(frozen=True)
class LongInteger:
    """What the JSON and YAML readers give in place of an integer written with more than
    MAX_DIGITS characters: not a number, so every check that wants one refuses it by its field."""

    length: int  # characters of the integer as written

    def __repr__(self) -> str:
        return f"<an integer of {self.length:,} digits>"

    __str__ = __repr__


def parse_int(text: str) -> int | LongInteger:
    """``json.loads(..., parse_int=parse_int)``: an ``int``, or a LongInteger when it is too long."""
    return LongInteger(len(text.lstrip("+-"))) if len(text) > MAX_DIGITS else int(text)


def decimal(text: str) -> float:
    """A number written with ASCII digits (``12``, ``0.98``, ``-1.5e3``; spaces around it allowed);
    ValueError for anything else: other scripts' digits, underscores, ``nan``, ``inf``, 5,000 digits."""
    number = text.strip(_SPACE)
    if len(number) > 2 * MAX_DIGITS or not _DECIMAL.fullmatch(number):
        raise ValueError(f"not a number written with ASCII digits: {shown(text)}")
    return float(number)


def whole(text: str, *, most: int = MAX_DIGITS) -> int:
    """A whole number written with ASCII digits only (at most ``most`` of them; spaces around it
    allowed); ValueError for anything else."""
    number = text.strip(_SPACE)
    if len(number) > most or not _WHOLE.fullmatch(number):
        raise ValueError(f"not a whole number written with ASCII digits: {shown(text)}")
    return int(number)


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line error messages; never raises (an
    integer too long for ``repr`` is described instead)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_DIGITS:
        return f"<an integer of more than {MAX_DIGITS} digits>"
    try:
        text = repr(value)
    except ValueError:  # a container holding an integer of more than 4,300 digits
        return f"<a {type(value).__name__} holding an integer too long to print>"
    return text if len(text) <= limit else text[:limit] + "..."
