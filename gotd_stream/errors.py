"""Errors whose messages name settings, not flags: the library speaks of `max_tokens`, the CLI of `--max-tokens`.

A message names a setting with `setting("max_tokens")`: `str(error)` reads `max_tokens`, and a front end words
it its own way (`error.worded(spell)`: the CLI writes `--max-tokens`). So the library never names a flag.
"""

from __future__ import annotations

from collections.abc import Callable

MARK = "\x00"  # around a setting's name inside a message; no path or JSON text holds one


def setting(name: str, value: bool | None = None) -> str:
    """A setting named in a message: `name`, or `name=False` for a switch turned off (--no-save-state)."""
    return f"{MARK}{name}{'' if value is None else f'={value}'}{MARK}"


def as_field(name: str, value: bool | None = None) -> str:
    """How str() names a setting: as the Settings field (`save_state=False` for a switch off)."""
    return name if value is None else f"{name}={value}"


class SettingsMessage(Exception):
    """An error whose message names settings with `setting()`; str() names them as Settings fields."""

    def worded(self, spell: Callable[[str, bool | None], str]) -> str:
        """The message with each setting as `spell(name, value)` words it (value: None, or False for a switch off)."""
        parts = str(self.args[0] if self.args else "").split(MARK)
        for i in range(1, len(parts), 2):
            name, _, value = parts[i].partition("=")
            parts[i] = spell(name, None if not value else value == "True")
        return "".join(parts)

    def __str__(self) -> str:
        return self.worded(as_field)


class UsageProblem(SettingsMessage):
    """Settings or inputs that cannot work together (the CLI exits 2); the message says what to change."""


class RuntimeProblem(SettingsMessage):
    """A failure of the run itself: damaged input, an unusable artifact or state, a solver that did not converge
    (the CLI exits 1); the message names the file and says what to do."""


class BadSetting(UsageProblem):
    """A setting's value that cannot work (a negative epsilon, a sample of none): refused when the settings are
    built, by the library itself, so that a program gets the same typed error as the command line."""


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def whole(name: str, value, least: int | None = None, optional: bool = False) -> None:
    """A whole number (at least `least`; None too when `optional`), or BadSetting naming the setting."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
        at_least = f" of at least {least}" if least is not None else ""
        raise BadSetting(f"{setting(name)} must be a whole number{at_least}, not {value!r}")


def positive(name: str, value) -> None:
    """A finite number above 0, or BadSetting naming the setting."""
    if not is_number(value) or value <= 0:
        raise BadSetting(f"{setting(name)} must be a finite number above 0, not {value!r}")
