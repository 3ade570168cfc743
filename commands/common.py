"""Small pieces every command shares: option parsing, safe printing of file names, the command line."""

from __future__ import annotations

import json
import re
import sys

from audiosim.errors import AudiosimError

POOLING_HELP = "Frame pooling: mu, sigma, delta, l2mean, max, delta_feat, or a '+' join such as mu+sigma+delta."
WAIT_HELP = "Seconds to wait for another process writing the collection [default: 10]."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_options(pairs: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` strings to keyword options; values are parsed as JSON when they can be (2, 0.5, true)."""
    opts = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AudiosimError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            opts[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            opts[key.strip().replace("-", "_")] = value
    return opts


def show(text) -> str:
    """``text`` safe for one line of terminal output: control characters (newlines in file names) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def command_line() -> str:
    import shlex

    return "audiosim " + " ".join(shlex.quote(a) for a in sys.argv[1:])
