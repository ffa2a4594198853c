"""A tiny name -> object registry shared by every axis (kernels, operators, schedules, targets, models).

A registry of an axis listed in `spine.axes.AXES` accepts only the names listed there, so the
torch-free table and the implementations cannot drift apart."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry mapping with a readable error for unknown names."""

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._entries: dict[str, T] = {}
        self._allowed = _allowed(axis)

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers `obj` under `name` (names are unique)."""

        def wrap(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} is already registered")
            if self._allowed is not None and name not in self._allowed:
                raise ValueError(f"{self.axis} {name!r} is not in drift_sweeps/spine/axes.py; add its entry there")
            self._entries[name] = obj
            return obj

        return wrap

    def add(self, name: str, obj: T) -> T:
        """Register `obj` under `name` without a decorator."""
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        """Entry for `name`; raises KeyError naming the allowed values."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.axis} {name!r}; allowed: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


def _allowed(axis: str):
    """The names `spine.axes` lists for this axis, or None for an axis without a table."""
    from .axes import AXES, REGISTRY_AXIS

    table = AXES.get(REGISTRY_AXIS.get(axis, axis))
    return None if table is None else frozenset(table)
