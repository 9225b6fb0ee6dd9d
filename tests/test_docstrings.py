"""The estimators' docstrings: their examples run, and their parameters agree with the code.

For every class of the registry (:data:`hyperunmix.registry.METHODS`):

* its class docstring has an ``Examples`` section whose examples (``>>>``) run with
  :mod:`doctest` and print what they show (shapes and booleans only, so that the output is
  the same on every platform);
* every ``__init__`` parameter is documented in numpydoc style with its default,
  ``name : type, default=value``, equal to the signature's (or the class says "Parameters
  as :class:`Base`" and has that base's ``__init__``);
* a parameter whose rules admit only a few strings (``Options``, maybe None) is typed
  ``Literal[...]`` with exactly those strings, and any ``Literal`` matches the rules.
"""

from __future__ import annotations

import ast
import doctest
import inspect
import re
import sys
import types
import typing
import warnings

import pytest
from test_fixed_point import one_thread  # noqa: F401  (autouse: one torch thread)

import hyperunmix as hu
from hyperunmix.params import NoneValue, Options

METHODS = hu.available_methods()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: A numpydoc section header: a title line, then a line of dashes as long.
SECTION = re.compile(r"^(?P<title>\S[^\n]*)\n-+$", re.MULTILINE)
#: An entry of a Parameters section: "name[, name...] : type[, default=value]".
ENTRY = re.compile(r"^(?P<names>\w+(?:, \w+)*) : (?P<type>.+?)(?:, default=(?P<default>.+))?$")


def sections(cls: type) -> dict[str, str]:
    """The numpydoc sections of the class docstring of ``cls``, title -> body; the text
    before the first section under ""."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    headers = list(SECTION.finditer(doc))
    found = {"": doc[: headers[0].start()] if headers else doc}
    for header, following in zip(headers, [*headers[1:], None]):
        end = following.start() if following else len(doc)
        found[header["title"]] = doc[header.end() : end]
    return found


def run_examples(cls: type) -> tuple[int, int, str]:
    """Run the examples of the class docstring of ``cls`` (not of its members) in a fresh
    namespace: (failures, examples run, doctest's report)."""
    finder = doctest.DocTestFinder(recurse=False)
    name = f"{cls.__module__}.{cls.__qualname__}"
    tests = finder.find(cls, name, module=sys.modules[cls.__module__], globs={})
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    failed = attempted = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny budgets miss tolerances and warn of it
        for test in tests:
            result = runner.run(test, out=report.append)
            failed += result.failed
            attempted += sum(not e.options.get(doctest.SKIP, False) for e in test.examples)
    return failed, attempted, "".join(report)


@pytest.mark.parametrize("name", METHODS)
def test_class_examples_run(name):
    cls = hu.get_method(name)
    found = sections(cls)
    assert "Examples" in found, f"{cls.__name__} has no Examples section"
    outside = [title for title, body in found.items() if title != "Examples" and ">>>" in body]
    assert not outside, f"{cls.__name__}: examples outside the Examples section: {outside}"
    failed, attempted, report = run_examples(cls)
    assert attempted >= 1, f"{cls.__name__}: no example runs"
    assert failed == 0, report


def test_a_broken_example_fails():
    class Broken:
        """Examples
        --------
        >>> 1 + 1
        3
        """

    failed, attempted, report = run_examples(Broken)
    assert (failed, attempted) == (1, 1)
    assert "Expected:\n    3\nGot:\n    2" in report


def documented_defaults(cls: type) -> dict[str, str]:
    """Parameter name -> the text after ``default=`` in the Parameters section of ``cls``
    (None when an entry states no default)."""
    defaults = {}
    for line in sections(cls)["Parameters"].splitlines():
        if not line or line[0].isspace():
            continue  # a description
        entry = ENTRY.match(line)
        assert entry, f"{cls.__name__}: unreadable Parameters entry {line!r}"
        if entry["type"].startswith("{"):
            # numpydoc lists the default first; the docs site takes the first as the default
            first = entry["type"][1:].split(",")[0].rstrip("}")
            assert first == entry["default"], f"{cls.__name__}: {line!r} lists another first"
        for name in entry["names"].split(", "):
            defaults[name] = entry["default"]
    return defaults


@pytest.mark.parametrize("name", METHODS)
def test_every_parameter_is_documented_with_its_default(name):
    cls = hu.get_method(name)
    found = sections(cls)
    if "Parameters" not in found:
        # "Parameters as :class:`FCLS`": then it has that class's parameters and defaults
        base = re.search(r"Parameters as :class:`(\w+)`", found[""])
        assert base, f"{cls.__name__} documents no parameters"
        (documented,) = [b for b in cls.__mro__ if b.__name__ == base[1]]
        assert cls.__init__ is documented.__init__
        cls = documented
    defaults = documented_defaults(cls)
    signature = inspect.signature(cls.__init__)
    for parameter in list(signature.parameters.values())[1:]:
        if parameter.kind is parameter.VAR_KEYWORD:  # old names, accepted with a warning
            continue
        where = f"{cls.__name__}({parameter.name})"
        assert parameter.name in defaults, f"{where} is not documented"
        assert defaults[parameter.name] is not None, f"{where}: no default= in its docs"
        stated = ast.literal_eval(defaults[parameter.name])
        assert stated == parameter.default, f"{where}: {stated!r} in the docs"
    assert set(defaults) <= set(signature.parameters), f"{cls.__name__} documents unknowns"


def literal_values(annotation: typing.Any) -> set:
    """The values of the ``Literal`` types in ``annotation`` (a union or not)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return set(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return set().union(*(literal_values(arg) for arg in typing.get_args(annotation)))
    return set()


@pytest.mark.parametrize("name", METHODS)
def test_literal_types_match_the_rules(name):
    cls = hu.get_method(name)
    hints = typing.get_type_hints(cls.__init__)
    for parameter, rules in cls._parameter_rules.items():
        options = {value for rule in rules if isinstance(rule, Options) for value in rule.values}
        literal = literal_values(hints[parameter])
        if literal or all(isinstance(rule, (Options, NoneValue)) for rule in rules):
            assert literal == options, f"{cls.__name__}({parameter}): {literal} vs {options}"
