"""model_package under the retrain job's retry policy: a step that fails in the bento build,
then after its record is committed, is retried by Dagster with the same run id and ends with
exactly one version, promoted once (before, each attempt registered a version of its own)."""

from __future__ import annotations

import dagster as dg
import pytest

from ml_pipelines.core import packaging
from ml_pipelines_tests.helpers import materialize
from ml_pipelines_tests.specs import NAME, make_spec, small_credit_attributes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_retried_packaging_step_makes_one_version(platform_root, monkeypatch):
    attempts: list[str] = []
    real_build, real_card = packaging.build_bento, packaging.publish_card

    def build_failing_once(pipeline, version, **kwargs):
        attempts.append("build")
        if attempts.count("build") == 1:
            raise RuntimeError("bento build failed: a transient fault made by the test")
        return real_build(pipeline, version, **kwargs)

    def card_failing_once(registry, pipeline, version):
        attempts.append("card")
        if attempts.count("card") == 1:  # after the commit and the promotion
            raise RuntimeError("card store unreachable: a transient fault made by the test")
        return real_card(registry, pipeline, version)

    monkeypatch.setattr(packaging, "build_bento", build_failing_once)
    monkeypatch.setattr(packaging, "publish_card", card_failing_once)
    with dg.instance_for_test() as instance:
        m = materialize(make_spec(**small_credit_attributes(sensors=False)), platform_root, instance=instance)
        logged = [e.user_message for e in instance.all_logs(m.result.run_id) if e.dagster_event is None]

    assert m.success, m.step_errors()
    [record] = m.registry.list_versions(NAME)
    assert attempts == ["build", "build", "card", "card"]  # three attempts; the third only finished the card
    version = record.version
    assert record.trigger.run_id == m.result.run_id
    assert m.registry.get_alias(NAME, "champion") == version
    assert [(mv.version, mv.previous) for mv in m.registry.alias_history(NAME)] == [(version, None)]
    assert m.registry.get_version(NAME, version).package.bento == f"credit-default:{version}"
    assert m.registry.store.exists(m.registry.card_key(NAME, version, "html"))
    # the bento build's output is streamed into the run log, before the build is reported done
    built = logged.index(f"{NAME} {version}: {packaging.Stage.BENTO_BUILT}")
    streamed = [i for i, message in enumerate(logged) if message.startswith("bento build: ")]
    assert streamed and max(streamed) < built, logged
    assert f"bento build: {packaging.BENTO_TAG_LINE}credit-default:{version}" in logged
