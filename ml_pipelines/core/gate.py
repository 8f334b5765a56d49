"""The promotion gate: TFX-style blessing. A candidate is packaged, and becomes
champion, only when it meets the spec's floor and does not lose to the current
champion by more than max_regression."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_pipelines.core.metrics import regression_of
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

    def explain(self) -> str:
        return "; ".join(self.reasons)


def decide_gate(
    metric: str,
    candidate: float,
    *,
    minimum: float | None,
    max_regression: float,
    champion_version: str | None = None,
    champion: float | None = None,
) -> GateDecision:
    """Meet the floor and do not lose to the champion by more than max_regression."""
    reasons, passed = [], True
    if minimum is not None:
        meets = candidate >= minimum if higher_is_better(metric) else candidate <= minimum
        word = "at least" if higher_is_better(metric) else "at most"
        reasons.append(
            f"{metric} {candidate:.4f} {'meets' if meets else 'fails'} the floor ({word} {minimum:.4f})"
        )
        passed &= meets
    if champion is not None:
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
    return GateDecision(passed, metric, candidate, minimum, champion_version, champion, max_regression, tuple(reasons))


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
    )
