"""Import objects named by dotted path: `pkg.module:attr` or `pkg.module.attr`."""

from __future__ import annotations

import importlib
from typing import Any


def import_dotted(path: str) -> Any:
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    if not module_name or not attr_path:
        raise ValueError(f"{path!r} is not a dotted path like 'package.module:name'")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj
