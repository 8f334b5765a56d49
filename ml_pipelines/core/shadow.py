"""Should the challenger replace the champion, judged on production rows? Both are
scored on the labelled production batches that neither learned from, and the gate's
rule decides: a paired bootstrap at the gate's confidence, the challenger not worse
than the champion by more than max_regression (`registry promote --from-shadow`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml_pipelines.core.champion import CHALLENGER, CHAMPION
from ml_pipelines.core.errors import RegistryError
from ml_pipelines.core.labels import LabelledBatches
from ml_pipelines.core.performance import PairedComparison, paired_bootstrap, score
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.spec import PipelineSpec, trusted_roots

MIN_SHADOW_SAMPLES = 200


@dataclass(frozen=True)
class ShadowVerdict:
    champion: str
    challenger: str
    batches: tuple[str, ...]
    comparison: PairedComparison
    max_regression: float

    @property
    def passed(self) -> bool:
        return self.comparison.not_worse_by_more_than(self.max_regression)

    def explain(self) -> str:
        verdict = "wins" if self.passed else "does not win"
        return (
            f"challenger {self.challenger} {verdict} against champion {self.champion} on production rows "
            f"of {len(self.batches)} labelled batch(es) neither learned from: {self.comparison.describe()}; "
            f"allowed regression {self.max_regression:.4f} at {self.comparison.confidence:.0%} confidence"
        )


def judge_challenger(registry: ModelRegistry, spec: PipelineSpec) -> ShadowVerdict:
    """The gate's rule applied to the challenger against the champion on fresh labelled rows."""
    name = spec.name
    versions = {alias: registry.get_alias(name, alias) for alias in (CHAMPION, CHALLENGER)}
    if None in versions.values():
        missing = [alias for alias, version in versions.items() if version is None]
        raise RegistryError(f"{name} has no {' and no '.join(missing)}: nothing to judge from shadow")
    records = {alias: registry.get_version(name, version) for alias, version in versions.items()}
    learned = {b.batch for record in records.values() for b in record.provenance.batches}
    store = LabelledBatches(registry.store, name)
    fresh = [meta.batch for meta in store.list() if meta.batch not in learned]
    if not fresh:
        raise RegistryError(
            f"{name}: no labelled production batch that neither {versions[CHAMPION]} nor {versions[CHALLENGER]} "
            "learned from; land and label production data first"
        )
    rows = pd.concat([store.load(batch) for batch in fresh], ignore_index=True)
    if len(rows) < spec.monitoring.performance.min_rows:
        raise RegistryError(
            f"{name}: {len(rows)} fresh labelled rows, fewer than monitoring.performance.min_rows "
            f"{spec.monitoring.performance.min_rows}: not enough evidence"
        )
    scored = {
        alias: score(registry.load_model(name, versions[alias], trusted_roots(spec)), rows, spec.target, spec.task)
        for alias in versions
    }
    comparison = paired_bootstrap(
        spec.gate_metric, scored[CHALLENGER], scored[CHAMPION],
        samples=max(spec.evaluation.bootstrap_samples, MIN_SHADOW_SAMPLES),
        confidence=spec.evaluation.gate.confidence, seed=spec.features.split.seed,
    )
    return ShadowVerdict(versions[CHAMPION], versions[CHALLENGER], tuple(fresh), comparison,
                         spec.evaluation.gate.max_regression)
