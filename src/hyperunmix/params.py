"""Declared hyper-parameter rules, checked in one place.

Each estimator states, in ``_parameter_rules``, what every ``__init__`` parameter may be:
a list of rules, any one of which admits a value (after scikit-learn's
``_parameter_constraints``). :func:`validate_params` checks a set of values against them and
raises one :class:`~hyperunmix.errors.InputError` naming the parameter, the value and what
is allowed, before any data are read.

>>> rules = {"epochs": [Integer(1)], "solver": [Options("deq", "unrolled")]}
>>> validate_params("Model", {"epochs": 2.5, "solver": "deq"}, rules)
Traceback (most recent call last):
...
hyperunmix.errors.InputError: Model: epochs = 2.5 is not allowed; it must be an integer >= 1
"""

from __future__ import annotations

import abc
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError


class Rule(abc.ABC):
    """One kind of value a parameter may take."""

    @abc.abstractmethod
    def admits(self, value: Any) -> bool:
        """Whether ``value`` is of this kind."""

    @abc.abstractmethod
    def __str__(self) -> str:
        """What the rule admits, in words ("an integer >= 1")."""

    def invalid_example(self) -> Any:
        """A value of the parameter's likely type that this rule refuses (for the contract
        tests), or None when there is none."""
        return None


def _is_integer(value: Any) -> bool:
    # bool is an int in Python; as a count or size it is a mistake (hidden=True).
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class Interval(Rule):
    """A number between ``low`` and ``high`` (None: unbounded on that side).

    Parameters
    ----------
    low, high : float or None
    integer : bool
        Only integers (not bools, not 2.0).
    closed : {"both", "left", "right", "neither"}
        Which bounds belong to the interval.
    """

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        integer: bool = False,
        closed: str = "both",
    ):
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be both, left, right or neither, got {closed!r}")
        self.low, self.high, self.integer, self.closed = low, high, integer, closed

    def admits(self, value: Any) -> bool:
        if not (_is_integer(value) if self.integer else _is_real(value)):
            return False
        if not math.isfinite(value):
            return self.low is None and self.high is None and not self.integer
        if self.low is not None:
            left_closed = self.closed in ("both", "left")
            if value < self.low or (value == self.low and not left_closed):
                return False
        if self.high is not None:
            right_closed = self.closed in ("both", "right")
            if value > self.high or (value == self.high and not right_closed):
                return False
        return True

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        left = ">=" if self.closed in ("both", "left") else ">"
        right = "<=" if self.closed in ("both", "right") else "<"
        if self.low is not None and self.high is not None:
            opening = "[" if left == ">=" else "("
            closing = "]" if right == "<=" else ")"
            return f"{kind} in {opening}{self.low:g}, {self.high:g}{closing}"
        if self.low is not None:
            return f"{kind} {left} {self.low:g}"
        if self.high is not None:
            return f"{kind} {right} {self.high:g}"
        return f"a finite {kind.split()[-1]}" if not self.integer else kind

    def invalid_example(self) -> Any:
        if self.low is not None:
            return self.low - 1
        if self.high is not None:
            return self.high + 1
        return "text"


class Integer(Interval):
    """An integer in ``[low, high]`` (a bool is not one)."""

    def __init__(self, low: int | None = None, high: int | None = None):
        super().__init__(low, high, integer=True)


class Real(Interval):
    """A finite real number between ``low`` and ``high``; ``closed`` as :class:`Interval`."""

    def __init__(self, low: float | None = None, high: float | None = None, closed: str = "both"):
        super().__init__(low, high, closed=closed)


class Options(Rule):
    """One of a few values (strings compared exactly)."""

    def __init__(self, *values: Any):
        self.values = values

    def admits(self, value: Any) -> bool:
        return isinstance(value, type(self.values[0])) and value in self.values

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def invalid_example(self) -> Any:
        return "no-such-option"


class Boolean(Rule):
    """True or False (NumPy's bools too), not 0 or 1."""

    def admits(self, value: Any) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "True or False"

    def invalid_example(self) -> Any:
        return "yes"


class NoneValue(Rule):
    """None, for "chosen automatically"."""

    def admits(self, value: Any) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


class Array(Rule):
    """An array or nested sequence of numbers with ``ndim`` dimensions."""

    def __init__(self, ndim: int, shape: str):
        self.ndim, self.shape = ndim, shape

    def admits(self, value: Any) -> bool:
        if isinstance(value, (str, bytes, os.PathLike, Mapping)) or not isinstance(
            value, (np.ndarray, Sequence)
        ):
            return False
        try:
            array = np.asarray(value)
        except ValueError:  # ragged nesting
            return False
        return array.ndim == self.ndim and array.dtype.kind in "biuf"

    def __str__(self) -> str:
        return f"an array {self.shape}"


class FilePath(Rule):
    """A file path (str or os.PathLike)."""

    def admits(self, value: Any) -> bool:
        return isinstance(value, (str, os.PathLike))

    def __str__(self) -> str:
        return "a file path"


class InstanceOf(Rule):
    """An instance of ``kind``, described as ``description``."""

    def __init__(self, kind: type, description: str):
        self.kind, self.description = kind, description

    def admits(self, value: Any) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        return self.description


class WithFields(Rule):
    """An object or mapping that has every one of ``fields`` (a spectral library)."""

    def __init__(self, *fields: str, description: str):
        self.fields, self.description = fields, description

    def admits(self, value: Any) -> bool:
        if isinstance(value, Mapping):
            return all(field in value for field in self.fields)
        return all(hasattr(value, field) for field in self.fields)

    def __str__(self) -> str:
        return self.description


#: A spectral library (:class:`hyperunmix.spectra.SpectralLibrary`, or any object or
#: mapping with ``spectra`` (K, L) and ``labels`` (K,)).
LIBRARY = WithFields("spectra", "labels", description="a library with spectra and labels")

#: Rules of one estimator: parameter name -> the rules any one of which admits a value.
Rules = Mapping[str, Sequence[Rule]]


def describe(rules: Sequence[Rule]) -> str:
    """What ``rules`` admit, in words: "an integer >= 2 or None"."""
    words = [str(rule) for rule in rules]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def validate_params(owner: str, params: Mapping[str, Any], rules: Rules) -> None:
    """An InputError for the first of ``params`` that none of its ``rules`` admit.

    ``owner`` (the estimator's class name) starts the message. A parameter without rules
    is a defect of the estimator, not of the call: a ``KeyError`` says so.
    """
    for name, value in params.items():
        if name not in rules:
            raise KeyError(f"{owner} declares no rule for its parameter {name!r}")
        if not any(rule.admits(value) for rule in rules[name]):
            raise InputError(
                f"{owner}: {name} = {_short(value)} is not allowed; it must be "
                f"{describe(rules[name])}"
            )


def _short(value: Any) -> str:
    """``repr(value)``, arrays by their shape and dtype, cut at 60 characters."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} ({value.dtype})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def summarise(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` for a record (run.json, benchmark results): JSON values kept, paths as
    strings, arrays by their shape, other objects by a short repr."""
    return {name: _summary(value) for name, value in params.items()}


def _summary(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if _is_real(value):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    if isinstance(value, (list, tuple)) and all(_is_real(v) or isinstance(v, str) for v in value):
        return list(value)
    return _short(value)
