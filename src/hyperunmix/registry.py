"""Registry of unmixing methods: one name -> one estimator class; and of the writer of
results.

The CLI, the benchmark and configuration files share this list. Entries are import paths,
resolved on first use, so that listing methods never imports torch. Adding a method is
one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .base import Unmixer

#: name -> "module:Class"
METHODS: dict[str, str] = {
    # classical: abundances only (endmembers given, or extracted by ``endmembers="vca"``)
    "fcls": "hyperunmix.linear.estimators:FCLS",
    "snnls": "hyperunmix.linear.estimators:SNNLS",
    "nnls": "hyperunmix.linear.estimators:NNLS",
    "ls": "hyperunmix.linear.estimators:LS",
    "sunsal": "hyperunmix.linear.estimators:SUnSAL",
    # classical: endmember extraction followed by FCLS
    "vca": "hyperunmix.linear.estimators:VCA",
    "nfindr": "hyperunmix.linear.estimators:NFINDR",
    "atgp": "hyperunmix.linear.estimators:ATGP",
    # deep
    "egunet": "hyperunmix.deep.egunet:EGUNet",
    "deq": "hyperunmix.deep.deq:DEQUnmix",
    "idnet": "hyperunmix.deep.idnet:IDNet",
}

#: "module:function" writing a Result to a directory. :meth:`hyperunmix.base.Result.save`
#: reaches it through here, so that the core does not import the output code, which
#: imports the core (and matplotlib and every reader).
RESULT_WRITER = "hyperunmix.output:save_result"


def available_methods() -> list[str]:
    """Names of every registered method."""
    return list(METHODS)


def get_method(name: str) -> type[Unmixer]:
    """The estimator class registered under ``name`` (case-insensitive)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in METHODS:
        raise InputError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return _resolve(METHODS[key])


def result_writer() -> Callable[..., dict]:
    """The function that writes a Result to a directory (:data:`RESULT_WRITER`)."""
    return _resolve(RESULT_WRITER)


def _resolve(target: str) -> Any:
    """The object ``"module:name"`` names, importing its module on first use."""
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


def make_method(name: str, **params: Any) -> Unmixer:
    """Instantiate the method ``name`` with ``params``, checked against its declared rules
    (an InputError names the first parameter refused)."""
    method = get_method(name)
    try:
        estimator = method(**params)
    except TypeError as exc:  # a parameter the method does not have
        raise InputError(
            f"{method.__name__}: {exc}; its parameters: {', '.join(method._param_names())}"
        ) from exc
    estimator.validate_params()
    return estimator
