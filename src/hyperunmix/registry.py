"""Registry of unmixing methods: one name -> one estimator class.

The CLI, the benchmark and configuration files share this list. Entries are import paths,
resolved on first use, so that listing methods never imports torch. Adding a method is
one line here.
"""

from __future__ import annotations

import importlib

from .errors import InputError

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


def available_methods() -> list[str]:
    """Names of every registered method."""
    return list(METHODS)


def get_method(name: str) -> type:
    """The estimator class registered under ``name`` (case-insensitive)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in METHODS:
        raise InputError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    module_name, _, class_name = METHODS[key].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_method(name: str, **params) -> object:
    """Instantiate the method ``name`` with ``params``."""
    return get_method(name)(**params)
