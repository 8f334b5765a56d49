"""The promotion gate: TFX-style blessing. A candidate that fails the spec's floor is
never registered. One that meets it becomes champion when, on the same holdout rows
and by a paired bootstrap at the gate's confidence, it is not worse than the current
champion by more than max_regression; otherwise it is registered as the challenger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_pipelines.core.metrics import regression_of
from ml_pipelines.core.performance import PairedComparison
from ml_pipelines.spec import PipelineSpec, higher_is_better

if TYPE_CHECKING:
    from ml_pipelines.core.evaluation import Evaluation


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    candidate: float
    minimum: float | None
    champion_version: str | None
    champion: float | None
    max_regression: float
    reasons: tuple[str, ...]
    meets_floor: bool = True
    comparison: PairedComparison | None = None

    def explain(self) -> str:
        return "; ".join(self.reasons)

    @property
    def outcome(self) -> str:
        """champion (blessed), challenger (registered, not served) or rejected (never registered)."""
        if not self.meets_floor:
            return "rejected"
        return "champion" if self.passed else "challenger"


def decide_gate(
    metric: str,
    candidate: float,
    *,
    minimum: float | None,
    max_regression: float,
    champion_version: str | None = None,
    champion: float | None = None,
    comparison: PairedComparison | None = None,
) -> GateDecision:
    """Meet the floor and do not lose to the champion by more than max_regression: by the paired
    comparison when there is one, else by the champion's point value."""
    reasons, meets_floor = [], True
    if minimum is not None:
        meets_floor = candidate >= minimum if higher_is_better(metric) else candidate <= minimum
        word = "at least" if higher_is_better(metric) else "at most"
        reasons.append(
            f"{metric} {candidate:.4f} {'meets' if meets_floor else 'fails'} the floor ({word} {minimum:.4f})"
        )
    passed = meets_floor
    if comparison is not None:
        wins = comparison.not_worse_by_more_than(max_regression)
        reasons.append(
            f"vs champion {champion_version}: {comparison.describe()}; "
            f"{'not worse' if wins else 'may be worse'} than the champion by more than {max_regression:.4f} "
            f"at {comparison.confidence:.0%} confidence"
        )
        passed &= wins
    elif champion is not None:
        loss = regression_of(metric, candidate, champion)
        ok = loss <= max_regression + 1e-12
        reasons.append(
            f"{metric} {candidate:.4f} vs champion {champion_version} {champion:.4f}: "
            + (f"worse by {loss:.4f}" if loss > 0 else f"better by {-loss:.4f}" if loss < 0 else "equal")
            + f" (allowed regression {max_regression:.4f})"
        )
        passed &= ok
    else:
        reasons.append("no champion yet: only the floor applies")
    return GateDecision(
        passed, metric, candidate, minimum, champion_version, champion, max_regression, tuple(reasons),
        meets_floor, comparison,
    )


def gate_for(spec: PipelineSpec, evaluation: Evaluation) -> GateDecision:
    """The spec's gate applied to an evaluation (candidate and champion on the same holdout)."""
    metric = spec.gate_metric
    return decide_gate(
        metric,
        evaluation.metrics[metric],
        minimum=spec.evaluation.gate.min,
        max_regression=spec.evaluation.gate.max_regression,
        champion_version=evaluation.champion_version,
        champion=(evaluation.champion_metrics or {}).get(metric),
        comparison=evaluation.comparison,
    )
