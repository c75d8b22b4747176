"""Records the process pool sends for every event and every notification."""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, TypeVar

T = TypeVar("T")


def pickled_as_fields(cls: type[T]) -> type[T]:
    """Pickle a slotted dataclass as its constructor and its field values.

    By default a slotted dataclass pickles through Python-level `__getstate__` and
    `__setstate__`; the constructor and a tuple of fields read in C cost half as much to
    send, and half as much again to receive.
    """
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if len(names) < 2:
        raise TypeError(f"{cls.__name__} needs two or more fields to be pickled as a tuple")
    values = operator.attrgetter(*names)

    def __reduce__(self: Any) -> tuple[type[T], tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]
    return cls
