"""The trust model for code a spec names (dotted.py): `source.generator`,
`features.derived[].function` and `models[].estimator` resolve only under the trusted
module prefixes, are checked before anything is imported, and must be a function or a
scikit-learn estimator class; ML_PIPELINES_TRUSTED_MODULES extends the list."""

from __future__ import annotations

import copy
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox
from pydantic import ValidationError

from ml_pipelines.core.features import DerivedColumns, FeatureError
from ml_pipelines.dotted import UntrustedPathError, import_dotted, trusted_modules
from ml_pipelines.settings import Settings, SettingsError
from ml_pipelines.spec import PipelineSpec, format_validation_error

TRUST_VARIABLE = "ML_PIPELINES_TRUSTED_MODULES"


def attributes(**changes: Any) -> dict[str, Any]:
    base = {
        "name": "loans",
        "task": "classification",
        "target": "defaulted",
        "source": {"kind": "csv", "path": "data/loans.csv"},
        "models": [{"name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression"}],
    }
    base.update(copy.deepcopy(changes))
    return base


def with_path(field: str, path: str) -> dict[str, Any]:
    """A spec naming `path` in one of the three fields that take a dotted path."""
    if field == "generator":
        return attributes(source={"kind": "synthetic", "generator": path})
    if field == "function":
        return attributes(features={"derived": [{"name": "d", "function": path, "inputs": ["income"]}]})
    return attributes(models=[{"name": "m", "estimator": path}])


FIELD_PATHS = {
    "generator": "source.synthetic.generator",
    "function": "features.derived.0.function",
    "estimator": "models.0.sklearn.estimator",
}


def spec_error(attrs: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        PipelineSpec.model_validate(attrs)
    return format_validation_error(info.value, "defs.yaml")


@pytest.fixture
def no_extension(monkeypatch):
    monkeypatch.delenv(TRUST_VARIABLE, raising=False)


@pytest.fixture
def throwaway_module(tmp_path, monkeypatch):
    """A module on sys.path, outside every trusted prefix, that records being imported."""
    name = f"throwaway_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from sklearn.linear_model import LogisticRegression as Model
        def make(**params):
            return None
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


# ---------------------------------------------------------------- refused at load, nothing imported


@pytest.mark.usefixtures("no_extension")
@pytest.mark.parametrize("path", ["subprocess:getoutput", "os:system", "builtins:eval", "os.system", "shutil:rmtree"])
@pytest.mark.parametrize("field", list(FIELD_PATHS))
def test_code_outside_the_trusted_modules_is_refused_naming_the_field(field, path):
    message = spec_error(with_path(field, path))
    module = path.replace(":", ".").rsplit(".", 1)[0]
    assert message.startswith(f"defs.yaml: {FIELD_PATHS[field]}: {field} {path!r} is not allowed: "), message
    assert f"module {module!r} is outside the trusted modules (ml_pipelines, sklearn, torch" in message
    assert TRUST_VARIABLE in message


@pytest.mark.usefixtures("no_extension")
@pytest.mark.parametrize("field", list(FIELD_PATHS))
def test_an_untrusted_module_is_never_imported(field, throwaway_module):
    name, marker = throwaway_module
    path = {"generator": f"{name}:make", "function": f"{name}:make", "estimator": f"{name}.Model"}[field]
    assert "is not allowed" in spec_error(with_path(field, path))
    assert name not in sys.modules
    assert not marker.exists()


@pytest.mark.usefixtures("no_extension")
@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("sklearn.datasets._base:shutil.rmtree", "module 'shutil' is outside"),  # a trusted module's import
        ("ml_pipelines.core.sources:pd.read_csv", "module 'pandas' is outside"),
        ("ml_pipelines.dotted:importlib.import_module", "module 'importlib' is outside"),
        ("ml_pipelines.core.sources:glob.glob", "module 'glob' is outside"),
        ("sklearn.base:__builtins__", "dunder"),
        ("ml_pipelines.core.sources:SourceError.__init__.__globals__", "dunder"),
        ("sklearn_lookalike.x:f", "module 'sklearn_lookalike.x' is outside"),  # a prefix is a whole package
    ],
)
def test_trusted_modules_do_not_lead_outside(path, reason):
    assert reason in spec_error(with_path("generator", path))
    with pytest.raises(UntrustedPathError, match=reason):
        import_dotted(path)


# ---------------------------------------------------------------- the kind of object


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.pipeline:make_pipeline",  # a function
        "ml_pipelines.core.sources:LoadedSource",  # a class, not an estimator
        "torch.nn:Linear",  # a trusted module's class, not scikit-learn's
        "ml_pipelines_tests.test_dotted:FitButNoEstimator",  # fit, but no BaseEstimator
    ],
)
def test_estimator_must_be_a_scikit_learn_estimator_class(path):
    message = spec_error(with_path("estimator", path))
    assert f"models.0.sklearn.estimator: estimator {path!r} is not a scikit-learn estimator class" in message


class FitButNoEstimator:
    def fit(self, X, y):  # noqa: N803
        return self


@pytest.mark.parametrize("field", ["generator", "function"])
@pytest.mark.parametrize(
    "path", ["sklearn.linear_model:LogisticRegression", "ml_pipelines.dotted:DEFAULT_TRUSTED_MODULES"]
)
def test_generator_and_function_must_be_functions(field, path):
    assert f"{FIELD_PATHS[field]}: {field} {path!r} is not a function" in spec_error(with_path(field, path))


def test_trusted_estimators_generators_and_functions_load():
    spec = PipelineSpec.model_validate(
        attributes(
            source={"kind": "synthetic", "generator": "ml_pipelines.datasets.credit:generate"},
            features={"derived": [{"name": "d", "function": f"{__name__}:ratio", "inputs": ["a", "b"]}]},
            models=[
                {"name": "hgb", "estimator": "sklearn.ensemble.HistGradientBoostingClassifier"},
                {"name": "slow", "estimator": "ml_pipelines_tests.core.test_selection:SlowClassifier"},
                {"name": "torch_mlp", "estimator": "ml_pipelines.core.torch_model:TorchMLPClassifier"},
            ],
        )
    )
    assert [m.name for m in spec.models] == ["hgb", "slow", "torch_mlp"]


def ratio(frame: pd.DataFrame) -> pd.Series:
    return frame["a"] / frame["b"]


# ---------------------------------------------------------------- the one setting


def test_the_setting_extends_the_trusted_modules(tmp_path, monkeypatch):
    package = tmp_path / "team_features"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ratios.py").write_text("def ratio(frame):\n    return frame['a'] / frame['b']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    derived = [{"name": "r", "function": "team_features.ratios:ratio", "inputs": ["a", "b"]}]

    monkeypatch.delenv(TRUST_VARIABLE, raising=False)
    assert "module 'team_features.ratios' is outside" in spec_error(attributes(features={"derived": derived}))
    assert "team_features" not in sys.modules

    monkeypatch.setenv(TRUST_VARIABLE, "other_pkg, team_features")
    assert trusted_modules()[-2:] == ("other_pkg", "team_features")
    spec = PipelineSpec.model_validate(attributes(features={"derived": derived}))
    columns = DerivedColumns((("r", None, spec.features.derived[0].function),))
    assert columns.transform(pd.DataFrame({"a": [1.0, 6.0], "b": [2.0, 3.0]}))["r"].tolist() == [0.5, 2.0]

    # a stored model that names untrusted code is refused where it runs, too
    monkeypatch.delenv(TRUST_VARIABLE)
    with pytest.raises(FeatureError, match="derived feature 'r': module 'team_features.ratios' is outside"):
        columns.transform(pd.DataFrame({"a": [1.0], "b": [2.0]}))
    sys.modules.pop("team_features", None)
    sys.modules.pop("team_features.ratios", None)


@pytest.mark.parametrize("value", ["os; rm -rf /", "pkg-name", "a..b"])
def test_a_bad_setting_names_the_variable(value):
    with pytest.raises(SettingsError, match=f"{TRUST_VARIABLE}: .* is not a module name"):
        Settings.from_env({TRUST_VARIABLE: value})


def test_runtime_imports_are_checked_too():
    with pytest.raises(FeatureError, match="derived feature 'x': module 'os' is outside"):
        DerivedColumns((("x", None, "os:getcwd"),)).transform(pd.DataFrame({"a": [1.0]}))


# ---------------------------------------------------------------- the real Dagster load path


@pytest.mark.usefixtures("no_extension")
def test_dagster_load_refuses_untrusted_code_without_importing_it(throwaway_module):
    name, marker = throwaway_module
    with create_defs_folder_sandbox() as sandbox:
        folder = Path(sandbox.defs_folder_path) / "loans"
        folder.mkdir(parents=True)
        spec = {"type": "ml_pipelines.components.MLPipeline", "attributes": with_path("generator", f"{name}:make")}
        (folder / "defs.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        with pytest.raises(Exception) as info:
            with sandbox.build_all_defs():
                pass
    text = "\n".join(str(e) for e in _chain(info.value))
    assert f"attributes.source.synthetic.generator at {folder / 'defs.yaml'}" in text
    assert f"generator '{name}:make' is not allowed" in text
    assert name not in sys.modules and not marker.exists()


def _chain(exc: BaseException | None):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
