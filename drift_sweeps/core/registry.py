"""A tiny name -> object registry shared by every axis (kernels, operators, schedules, targets)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry mapping with a readable error for unknown names."""

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers `obj` under `name` (names are unique)."""

        def wrap(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} is already registered")
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
