"""The settings every command shares: one flag per ``Settings`` field, each overriding its
``STOCKPULSE_*`` environment variable (handlers/runtime/settings.py)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from handlers.model.numbers import decimal, shown, whole
from handlers.runtime.settings import ENV, Settings

__all__ = ["add_settings", "settings_from", "flag_type", "NUMBER", "WHOLE"]


def flag_type(parse: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """An argparse ``type`` whose error says what the flag takes (argparse adds the flag's name)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"must be {what}, got {shown(text)}") from exc

    convert.__name__ = parse.__name__
    return convert


#: only ASCII digits are numbers (``float("٥")`` is 5.0): handlers/model/numbers.py
NUMBER = flag_type(decimal, "a number written with ASCII digits")
WHOLE = flag_type(whole, "a whole number written with ASCII digits")


def add_settings(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        variable, flag, _, default = ENV[name]
        parser.add_argument(
            flag, dest=name, metavar=name.split("_")[0].upper(), help=f"overrides ${variable} (default {default or 'unset'})"
        )


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(os.environ, **{name: getattr(args, name, None) for name in ENV})
