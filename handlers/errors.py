"""The exceptions stockpulse raises on purpose.

::

    StockpulseError            every error below; the CLI prints its message as one line, exit 2
    ├── ConfigError            a setting, an environment variable or a catalog file is wrong
    │   └── CatalogError       the catalog file: names the row and field
    ├── InputError             an invocation event is wrong: names the field (``event.time``)
    └── StorageError           the store could not be read or written: names the key
        └── ConflictError      a conditional write lost (412): someone else wrote first

Messages always name the offending field, variable or key, so one line is enough to fix it, and
never show a credential (:func:`redact`).
"""

from __future__ import annotations

import re

__all__ = ["redact", "StockpulseError", "ConfigError", "CatalogError", "InputError", "StorageError", "ConflictError"]


class StockpulseError(Exception):
    """Base of every error stockpulse raises on purpose."""


class ConfigError(StockpulseError):
    """A setting, environment variable or file the user supplied is invalid."""


class CatalogError(ConfigError):
    """The catalog file is invalid; the message names the row and field."""


class InputError(StockpulseError):
    """An invocation event is invalid; the message names the field."""


class StorageError(StockpulseError):
    """The store could not be read or written; the message names the key."""


class ConflictError(StorageError):
    """A conditional write (If-Match / If-None-Match) lost against another writer."""


def redact(text: str | None) -> str:
    """``text`` with every ``scheme://user:password@`` reduced to ``scheme://***@``."""
    if not text:
        return text or ""
    return re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)
