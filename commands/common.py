"""Small pieces every command shares: option parsing, safe printing of file names, the command line."""

from __future__ import annotations

import json
import re
import shlex
import sys

import click

from audiosim.errors import InvalidOptionError
from audiosim.values import finite_number, item_id

POOLING_HELP = "Frame pooling: mu, sigma, delta, l2mean, max, delta_feat, or a '+' join such as mu+sigma+delta."
WAIT_HELP = "Seconds to wait for another process writing the collection [default: 10]."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Number(click.ParamType):
    """A float option: refuses nan, infinity (unless ``allow_inf``) and values outside its range (an
    :class:`~audiosim.errors.InvalidOptionError`: one line naming the option, exit code 2).

    Every float option of every command uses this type (the check is :func:`audiosim.values.finite_number`,
    which the library and the service use too).
    """

    name = "number"

    def __init__(self, *, min: float | None = None, max: float | None = None, min_open: bool = False,
                 max_open: bool = False, allow_inf: bool = False) -> None:
        self.limits = dict(min=min, max=max, min_open=min_open, max_open=max_open, allow_inf=allow_inf)

    def convert(self, value, param, ctx):
        option = param.opts[0] if param is not None and getattr(param, "opts", None) else "value"
        return finite_number(value, option=option, **self.limits)  # InvalidOptionError: one line, exit 2


class ItemId(click.ParamType):
    """An item id option: a whole number from 0 to 2**63 - 1 (ids are int64), else exit code 2."""

    name = "id"

    def convert(self, value, param, ctx):
        option = param.opts[0] if param is not None and getattr(param, "opts", None) else "--id"
        return item_id(value, option=option)


SECONDS = Number(min=0)  # a time or duration in seconds: finite, not negative
WAIT = Number(min=0, allow_inf=True)  # --wait: seconds, or inf to wait as long as it takes
ITEM_ID = ItemId()


def parse_options(pairs: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` strings to keyword options; values are parsed as JSON when they can be (2, 0.5, true)."""
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidOptionError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            opts[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.strip().replace("-", "_")] = value
    return opts


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 vector"``, ``"2 vectors"``, ``"0 vectors"`` (``many``: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def show(text) -> str:
    """``text`` safe for one line of terminal output: control characters (newlines in file names) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def command_line() -> str:
    return "audiosim " + " ".join(shlex.quote(a) for a in sys.argv[1:])
