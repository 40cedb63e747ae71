"""Doctests of the optional extras skip where the extra is not installed (`make test` installs only dev;
.ci/run adds crf and faiss), as their tests do."""

import importlib.util

import pytest

#: module whose docstring examples need an extra -> the module the extra installs
NEEDS = {"lesseg.refine.crf": "pydensecrf"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for module, extra in NEEDS.items():
            if item.name.startswith(module) and importlib.util.find_spec(extra) is None:
                item.add_marker(pytest.mark.skip(reason=f"needs the optional package {extra!r}"))
