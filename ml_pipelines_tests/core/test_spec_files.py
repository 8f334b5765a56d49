"""core.spec_files: the YAML text of a spec, checked before Dagster parses it."""

from __future__ import annotations

import time

import pytest

from ml_pipelines.core.errors import InputError, SpecFileError
from ml_pipelines.core.spec_files import (
    MAX_SPEC_BYTES,
    MAX_SPEC_NODES,
    check_spec_file,
    check_spec_files,
    check_spec_text,
    load_spec_document,
    spec_files,
)
from ml_pipelines_tests.specs import PIPELINES_DIR


def alias_bomb(levels: int = 9) -> str:
    """A 19-line spec whose aliases expand to 10**levels leaves (the issue's bomb)."""
    lines = [
        "type: ml_pipelines.components.MLPipeline",
        "attributes:",
        "  name: bomb",
        "  task: classification",
        "  target: y",
        "  source:",
        "    kind: synthetic",
        "    generator: ml_pipelines.datasets.credit:generate",
        "    params:",
        '      a: &a ["x","x","x","x","x","x","x","x","x","x"]',
    ]
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        lines.append(f"      {name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def refused(text: str) -> str:
    with pytest.raises(SpecFileError) as info:
        check_spec_text(text, "pipelines/x/defs.yaml")
    return str(info.value)


def test_alias_bomb_is_refused_at_once_naming_the_file():
    start = time.perf_counter()
    message = refused(alias_bomb())
    assert time.perf_counter() - start < 1.0
    assert message.startswith("pipelines/x/defs.yaml: its YAML aliases expand to 1,234,567,927 nodes")  # 10**9 leaves
    assert f"more than the {MAX_SPEC_NODES:,}" in message


def test_a_few_aliases_are_fine():
    check_spec_text(alias_bomb(levels=3), "defs.yaml")  # about 1,100 nodes
    check_spec_text("defaults: &d {max_iter: 100}\nmodels:\n  - {name: a, params: *d}\n  - {name: b, params: *d}\n",
                    "defs.yaml")


def test_duplicate_key_names_file_line_and_key():
    text = "type: x\nattributes:\n  name: loans\n  task: classification\n  name: other\n"
    assert refused(text) == (
        "pipelines/x/defs.yaml:5: duplicate key 'name' (first at line 3); "
        "YAML would silently keep only the last value"
    )


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("a:\n  b: {c: 1, c: 2}\n", 2, "'c'"),
        ("a:\n  - {x: 1}\n  - {y: 1, 'y': 2}\n", 3, "'y'"),
        ("1: a\n01: b\n", 2, "1"),  # both are the integer 1
    ],
    ids=["flow-mapping", "in-a-list", "same-value-other-spelling"],
)
def test_duplicate_keys_anywhere(text, line, key):
    assert refused(text).startswith(f"pipelines/x/defs.yaml:{line}: duplicate key {key} ")


def test_merge_keys_are_not_duplicates():
    check_spec_text("base: &b {k: 1, j: 2}\nthis:\n  <<: *b\n  k: 3\n", "defs.yaml")


def test_recursive_alias_deep_nesting_and_bad_syntax_are_named():
    assert refused("a: &x [1, *x]\n").startswith("pipelines/x/defs.yaml:1: a YAML alias refers to a node that contains it")
    assert "nested more than 100 levels deep" in refused("a: " + "[" * 150 + "]" * 150 + "\n")
    assert "YAML nested too deeply to parse" in refused("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert refused("a: [1, 2\nb: 3\n").startswith("pipelines/x/defs.yaml:")
    assert "not valid YAML" in refused("a: [1, 2\nb: 3\n")


def test_oversized_file_is_refused(tmp_path):
    path = tmp_path / "defs.yaml"
    path.write_text("a: " + "x" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(SpecFileError, match=f"{path}: .* bytes; a spec file may have at most"):
        check_spec_file(path)


def test_every_bad_file_is_named_at_once(tmp_path):
    good, bomb, duplicate = (tmp_path / n / "defs.yaml" for n in ("good", "bomb", "dup"))
    for path in (good, bomb, duplicate):
        path.parent.mkdir()
    good.write_text("a: 1\n")
    bomb.write_text(alias_bomb())
    duplicate.write_text("a: 1\na: 2\n")
    with pytest.raises(SpecFileError) as info:
        check_spec_files([good, bomb, duplicate])
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{bomb}: its YAML aliases expand")
    assert lines[1].startswith(f"{duplicate}:2: duplicate key 'a'")
    assert isinstance(info.value, InputError)


def test_spec_files_finds_what_dagster_reads_and_skips_hidden_folders(tmp_path):
    for relative in ("a/defs.yaml", "b/defs.yml", "c/component.yaml", "d/e/defs.yaml", ".hidden/defs.yaml",
                     "__pycache__/defs.yaml", "f/other.yaml"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("a: 1\n")
    found = [p.relative_to(tmp_path).as_posix() for p in spec_files(tmp_path)]
    assert sorted(found) == ["a/defs.yaml", "b/defs.yml", "c/component.yaml", "d/e/defs.yaml"]


def test_demo_specs_pass_and_load():
    files = spec_files(PIPELINES_DIR)
    assert len(files) >= 3
    check_spec_files(files)
    assert load_spec_document(files[0])["type"] == "ml_pipelines.components.MLPipeline"


def test_load_spec_document_refuses_before_parsing(tmp_path):
    path = tmp_path / "defs.yaml"
    path.write_text(alias_bomb())
    with pytest.raises(SpecFileError, match=str(path)):
        load_spec_document(path)
