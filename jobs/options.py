"""The settings every command shares: one flag per ``Settings`` field, each overriding its
``STOCKPULSE_*`` environment variable (handlers/runtime/settings.py)."""

from __future__ import annotations

import argparse
import os

from handlers.runtime.settings import ENV, Settings

__all__ = ["add_settings", "settings_from"]


def add_settings(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        variable, flag, _, default = ENV[name]
        shown = default or "unset"
        parser.add_argument(flag, dest=name, metavar=name.split("_")[0].upper(), help=f"overrides ${variable} (default {shown})")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(os.environ, **{name: getattr(args, name, None) for name in ENV})
