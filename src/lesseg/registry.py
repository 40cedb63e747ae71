"""The one registry of methods: a name, its :class:`~lesseg.methods.Method` class, and through it the
config class of its ``method`` section.

A method file registers itself with :func:`register_method`; the config loader, ``lesseg run`` and the
Python API look it up by name here. Nothing here imports a method: the built-in ones (``lesseg.methods``)
are imported the first time a name is looked up, as a plugin's would be, so that the config loader and
the stages never depend on the methods that build on them.

Example:
    >>> get_method("cam").name
    'cam'
    >>> "picie" in registered_methods()
    True
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from lesseg.errors import ConfigError, did_you_mean

BUILTIN_METHODS = "lesseg.methods"  # the package whose import registers lesseg's own methods

_METHODS: dict[str, type] = {}


def register_method(name: str, config: type | None = None):
    """Class decorator: register a Method class under ``name``, with ``config`` as the dataclass of its
    ``method`` section (default: the base ``MethodConfig``, which holds only ``name``). Registering a name
    again replaces the earlier class."""

    def wrap(cls: type) -> type:
        nonlocal config
        cls.name = name
        if config is not None:
            if "__dataclass_fields__" not in config.__dict__:
                config = dataclasses.dataclass(config)
            cls.config_class = config
            config.registered_name = name  # a section of this class always says which method it is
        _METHODS[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    importlib.import_module(BUILTIN_METHODS)


def get_method(name: Any) -> type:
    """The Method class registered as ``name``; ConfigError listing the registered names otherwise."""
    if name not in _METHODS:
        _load_builtins()
    if not isinstance(name, str) or name not in _METHODS:
        raise ConfigError(
            f"unknown method {name!r}{did_you_mean(str(name), _METHODS)}; registered: {', '.join(registered_methods())}"
        )
    return _METHODS[name]


def registered_methods() -> list[str]:
    _load_builtins()
    return sorted(_METHODS)
