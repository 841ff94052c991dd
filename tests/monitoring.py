"""A jax.monitoring listener for the length of a block, on every jax the project supports."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import jax

#: kind -> (register, public unregister, its private name before jax 0.8.1)
_KINDS = {
    "event": ("register_event_listener", "unregister_event_listener", "_unregister_event_listener_by_callback"),
    "duration": ("register_event_duration_secs_listener", "unregister_event_duration_listener",
                 "_unregister_event_duration_listener_by_callback"),
}


@contextlib.contextmanager
def listening(listener: Callable, kind: str = "event") -> Iterator[None]:
    """Registers `listener` for events ("event") or event durations ("duration") in the block."""
    register, public, private = _KINDS[kind]
    getattr(jax.monitoring, register)(listener)
    try:
        yield
    finally:
        unregister = getattr(jax.monitoring, public, None)
        if unregister is None:
            from jax._src import monitoring

            unregister = getattr(monitoring, private)
        unregister(listener)
