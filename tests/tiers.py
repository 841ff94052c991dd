"""Fast and slow tiers of a parametrized product (ott-jax's ``only_fast``, spelled for pytest).

``@tiers.parametrize(argnames, argvalues, only_fast=...)`` is ``pytest.mark.parametrize`` whose
entries chosen by `only_fast` are marked `only_fast` and the others `slow`. The default run
(``-m "not slow"``) therefore runs the subset; ``python -m pytest -m slow`` runs the whole
product, the subset included (tests/conftest.py adds the `slow` mark to `only_fast` entries in a
slow-tier run). Stacked decorators form a product: an entry runs in the fast tier only when
every one of its parameters is in its subset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from _pytest.mark import ParameterSet


def parametrize(
    argnames: str | Sequence[str],
    argvalues: Iterable,
    *,
    only_fast: int | Iterable[int] | Callable[[Any], bool],
    **kwargs,
):
    """`pytest.mark.parametrize`, with the entries outside `only_fast` marked slow.

    Args:
      argnames, argvalues, kwargs: as for `pytest.mark.parametrize`.
      only_fast: the fast-tier entries: an index, indices, or a predicate of the entry's value
        (the tuple of values for several argnames), e.g. ``lambda method: method == "als"``.
    """
    names = [s.strip() for s in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
    entries = []
    for value in argvalues:
        if isinstance(value, ParameterSet):
            entries.append((value.values, list(value.marks), value.id))
        else:
            entries.append((((value,) if len(names) == 1 else tuple(value)), [], None))
    if callable(only_fast):
        fast = {i for i, (args, _, _) in enumerate(entries) if only_fast(args[0] if len(names) == 1 else args)}
    else:
        fast = {only_fast} if isinstance(only_fast, int) else set(only_fast)
        if not fast <= set(range(len(entries))):
            raise ValueError(f"only_fast: expected indices into the {len(entries)} values, got {sorted(fast)}")
    if not fast:
        raise ValueError(f"only_fast: selects none of the {len(entries)} values of {argnames!r}")
    params = [
        pytest.param(*args, marks=[*marks, pytest.mark.only_fast if i in fast else pytest.mark.slow], id=id_)
        for i, (args, marks, id_) in enumerate(entries)
    ]
    return pytest.mark.parametrize(argnames, params, **kwargs)
