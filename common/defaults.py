"""Flag defaults that depend on other flags: `fill_defaults(cfg, name=value, …)` in a config's `resolve()`."""
from __future__ import annotations

from typing import Any


def fill_defaults(cfg: Any, **defaults: Any) -> None:
    """Set each field of `cfg` named in `defaults` that is still None (its flag not given) to that value.

    Args:
        cfg: a config dataclass instance, in its `resolve()`.
        **defaults: field name → the value it takes when its flag was not given (an explicit value,
            0 included, is kept).
    """
    for name, value in defaults.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)
