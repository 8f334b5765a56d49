"""The YAML text of spec files, checked before Dagster parses it.

Dagster's component loader builds every `defs.yaml` into Python objects and then
walks them; YAML aliases make that walk exponential (an "alias bomb": 19 lines,
10^9 leaves, a load that never ends), and a repeated mapping key silently keeps
only its last value. These checks compose each document into YAML nodes (linear
in the text: an alias is a reference, not a copy), then count the nodes the
aliases would expand to, without expanding them (each distinct node is sized once and
its size reused wherever an alias points at it), and look at every mapping's keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ml_pipelines.core.errors import SpecFileError

MAX_SPEC_BYTES = 1_000_000
MAX_SPEC_NODES = 100_000  # after alias expansion; the largest demo spec has about 200
MAX_SPEC_DEPTH = 100
SPEC_FILE_NAMES = ("defs.yaml", "defs.yml", "component.yaml")  # the names Dagster's loader reads


def spec_files(defs_folder: Path) -> list[Path]:
    """Every spec file Dagster's loader may read under defs_folder (hidden and cache folders skipped)."""
    found = []
    for name in SPEC_FILE_NAMES:
        for path in defs_folder.rglob(name):
            parts = path.relative_to(defs_folder).parts[:-1]
            if not any(p.startswith(".") or p == "__pycache__" for p in parts):
                found.append(path)
    return sorted(found)


def check_spec_files(paths: Iterable[Path]) -> None:
    """Refuse any file whose YAML is unsafe to parse, naming every such file at once."""
    problems = []
    for path in paths:
        try:
            check_spec_file(path)
        except SpecFileError as exc:
            problems.append(str(exc))
    if problems:
        raise SpecFileError("\n".join(problems))


def load_spec_document(path: Path) -> Any:
    """The first YAML document of a spec file, after the checks (for commands that read one spec)."""
    check_spec_file(path)
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check_spec_file(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecFileError(f"{path}: {size:,} bytes; a spec file may have at most {MAX_SPEC_BYTES:,}")
    check_spec_text(path.read_text(encoding="utf-8"), str(path))


def check_spec_text(text: str, file: str) -> None:
    """SpecFileError naming the file (and line) when the YAML holds an alias bomb, a
    recursive alias, nesting deeper than MAX_SPEC_DEPTH, a duplicate key, or bad syntax."""
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            _Walk(loader, file).check(loader.get_node())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}" if mark else file
        raise SpecFileError(f"{where}: not valid YAML: {exc.problem or exc.context}") from exc
    except RecursionError as exc:
        raise SpecFileError(f"{file}: YAML nested too deeply to parse") from exc
    finally:
        loader.dispose()


class _Walk:
    """One document's node graph: expanded size per node (memoized, so a shared node is
    counted where it is used without being walked again) and duplicate keys."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader, self.file = loader, file
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def check(self, root: yaml.Node) -> None:
        total = self.size(root, depth=0)
        if total > MAX_SPEC_NODES:
            raise SpecFileError(
                f"{self.file}: its YAML aliases expand to {total:,} nodes, more than the {MAX_SPEC_NODES:,} "
                "a spec may have (an alias bomb?); refused before parsing"
            )

    def size(self, node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.open:
            raise SpecFileError(f"{self._at(node)}: a YAML alias refers to a node that contains it")
        if depth > MAX_SPEC_DEPTH:
            raise SpecFileError(f"{self._at(node)}: YAML nested more than {MAX_SPEC_DEPTH} levels deep")
        self.open.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            self._no_duplicate_keys(node)
            for key_node, value_node in node.value:
                total += self.size(key_node, depth + 1) + self.size(value_node, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += self.size(item, depth + 1)
        self.open.discard(key)
        self.sizes[key] = total
        return total

    def _no_duplicate_keys(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self._key(key_node)
            if key in seen:
                raise SpecFileError(
                    f"{self._at(key_node)}: duplicate key {key!r} (first at line {seen[key].start_mark.line + 1}); "
                    "YAML would silently keep only the last value"
                )
            seen[key] = key_node

    def _key(self, node: yaml.ScalarNode) -> Any:
        try:
            value = self.loader.construct_object(node)
            hash(value)
            return value
        except (yaml.YAMLError, TypeError, ValueError):
            return node.value

    def _at(self, node: yaml.Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"
