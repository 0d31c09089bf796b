"""Files shipped with konbini-ld: JSON-LD contexts, named queries, SHACL shapes, samples.

In a wheel they live inside the package (``konbini_ld/contexts`` …); in a source
checkout (editable install) they live at the top of the repository. Both layouts
are found without any configuration.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["resource_dir"]

_PACKAGE = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """Return the directory holding the shipped resource ``name`` (``contexts``, ``queries``…).

    :raises FileNotFoundError: if neither the installed nor the source layout has it.
    """
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"konbini-ld resource directory {name!r} is missing from the installation")
