"""Frozen records made quickly, every field given: what a step makes (an Event, a CaseState).

A frozen attrs class's own ``__init__`` sets each field through ``object.__setattr__``:
a C call whose arguments are packed and unpacked again, once per field, nineteen times
for an Event. :func:`maker` gives a function that makes the same object from every
field, in the class's field order, at a third of the cost: an instance of a mutable
twin (the same slots, in the same order) has its fields stored as any object's
attributes are, and then becomes an instance of the frozen class, which Python allows
between two classes of the same layout. What comes out is an instance of the class
itself, equal to what the class makes from the same values, and as frozen.

Only a class that checks nothing on the way in may be made so: no field validators or
converters (the twin would skip them), and no ``__dict__`` or weak-reference slot (with
one, Python refuses the change of class). :func:`maker` refuses any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["maker"]

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """A function making ``cls`` from all its fields, positionally, as ``cls(*values)``."""
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    unfit = [f.name for f in fields if f.validator is not None or f.converter is not None]
    slots = getattr(cls, "__slots__", None)
    if unfit or slots is None or "__weakref__" in slots or "__dict__" in slots:
        raise TypeError(f"{cls.__name__} can't be made field by field: it has validators or "
                        f"converters ({', '.join(unfit) or 'none'}), or no slots, or a "
                        f"__dict__ or weak-reference slot.")
    twin: Any = attrs.make_class(
        f"_{cls.__name__}Fields", {f.name: attrs.field() for f in fields}, slots=True,
        frozen=False, weakref_slot=False, eq=False, order=False, repr=False)

    def make(*values: Any) -> T:
        record = twin(*values)
        record.__class__ = cls
        made: T = record
        return made

    make.__doc__ = f"A {cls.__name__} from all its fields, in order (see records.maker)."
    return make
