"""Checks every option value passes wherever it comes from (CLI flag, HTTP field, Python call).

:func:`finite_number`: a real number, never NaN, never infinite (unless the option gives
infinity a meaning, such as ``--wait inf``), inside the option's range. :func:`item_id`: an
item id, a whole number from 0 to :data:`INT64_MAX` (ids are stored as int64). Each failure is
an :class:`~audiosim.errors.InvalidOptionError` naming the option and what it takes. The CLI's
``Number`` and ``ItemId`` click types (:mod:`audiosim.commands.common`) are these checks.
"""

from __future__ import annotations

import math
import numbers

from audiosim.errors import InvalidOptionError

INT64_MAX = 2**63 - 1


def _range_text(min: float | None, max: float | None, min_open: bool, max_open: bool) -> str:
    parts = []
    if min is not None:
        parts.append(f"{'above' if min_open else 'at least'} {min:g}")
    if max is not None:
        parts.append(f"{'below' if max_open else 'at most'} {max:g}")
    return " and ".join(parts)


def finite_number(value, *, option: str, min: float | None = None, max: float | None = None, min_open: bool = False,
                  max_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float: finite (``inf`` only with ``allow_inf``), never NaN, within ``[min, max]``
    (``min_open`` / ``max_open``: the end itself excluded); else an :class:`InvalidOptionError`."""

    wants = "a number" + (f" {_range_text(min, max, min_open, max_open)}" if (min, max) != (None, None) else "")
    if allow_inf:
        wants += " (or inf)"
    if isinstance(value, bool):
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}")
    try:
        v = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}") from None
    if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}")
    if (min is not None and (v < min or (min_open and v == min))) or \
            (max is not None and (v > max or (max_open and v == max))):
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}")
    return v


def item_id(value, *, option: str = "--id") -> int:
    """``value`` as an item id: a whole number from 0 to 2**63 - 1; else an :class:`InvalidOptionError`."""

    wants = f"an item id (a whole number from 0 to {INT64_MAX})"
    if isinstance(value, bool):
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}")
    if isinstance(value, numbers.Integral):
        n = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        n = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    else:
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}")
    if not 0 <= n <= INT64_MAX:
        raise InvalidOptionError(f"{option} takes {wants}, got {value!r}")
    return n
