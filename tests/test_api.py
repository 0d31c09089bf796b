"""The public API surface and the error hierarchy."""

from __future__ import annotations

import inspect

import konbini_ld
from konbini_ld import errors


def test_all_is_complete_and_sorted() -> None:
    public = {name for name in dir(konbini_ld) if not name.startswith("_")}
    modules = {name for name, value in vars(konbini_ld).items() if inspect.ismodule(value)}
    assert set(konbini_ld.__all__) == public - modules - {"annotations"}
    assert konbini_ld.__all__ == sorted(konbini_ld.__all__)


def test_every_error_derives_from_one_root_and_has_an_exit_code() -> None:
    classes = [c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, Exception)]
    assert {c.__name__ for c in classes} == set(errors.__all__)
    for cls in classes:
        assert issubclass(cls, errors.KonbiniError)
        assert cls.exit_code in (1, 2, 3, 4)
    assert errors.AuthError.exit_code == 3
    assert errors.CreditsExhaustedError.exit_code == 4
    assert errors.UsageError.exit_code == 2


def test_every_error_class_is_drawn_in_the_module_docstring() -> None:
    for name in errors.__all__:
        assert name in (errors.__doc__ or ""), name


def test_input_errors_name_their_source_and_line() -> None:
    e = errors.ExpandError("bad", source="x.jsonl", line=3)
    assert str(e) == "x.jsonl:3: bad"
