"""Hyperparameters as frozen dataclasses, changed only by explicit overrides.

Every stage keeps its settings in a frozen dataclass with the published values as
defaults. A trained checkpoint of another size stores the fields it changes under
"hparams" (plain values, tuples as lists); `with_overrides` applies such a mapping.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from typing import Any, TypeVar

H = TypeVar("H")


def field_values(hp: Any) -> dict[str, Any]:
    """{field name: value} of a hyperparameter dataclass instance (or its defaults, given the class)."""
    return {f.name: getattr(hp, f.name) for f in fields(hp)} if not isinstance(hp, type) else \
        {k: v for k, v in asdict(hp()).items()}


def _as_field_value(value: Any) -> Any:
    # Checkpoints store tuples as lists when they pass through JSON; the dataclasses want tuples.
    return tuple(_as_field_value(v) for v in value) if isinstance(value, (list, tuple)) else value


def with_overrides(hp: H, overrides: Mapping[str, Any] | None = None) -> H:
    """`hp` with the fields named in `overrides` replaced; names that are not fields are ignored."""
    names = {f.name for f in fields(hp)}
    changes = {k: _as_field_value(v) for k, v in dict(overrides or {}).items() if k in names}
    return replace(hp, **changes) if changes else hp


def differences(hp: Any, reference: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of `hp` whose values differ from `reference`'s, except `skip`, as plain values."""
    base = field_values(reference)
    return {k: v for k, v in field_values(hp).items() if k not in skip and v != base.get(k)}
