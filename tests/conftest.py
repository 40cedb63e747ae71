"""Test ids that `pytest path::name[id]` can address: a string parameter's id keeps only word characters
(an id with spaces, brackets or backslashes cannot be given on the command line)."""

import re


def pytest_make_parametrize_id(config, val, argname):
    if isinstance(val, str):
        return re.sub(r"[^\w.-]+", "_", val).strip("_")[:48] or None
    return None
