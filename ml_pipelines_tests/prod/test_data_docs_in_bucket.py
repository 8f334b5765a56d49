"""GX Data Docs in the prod profile: each validation's page goes to the bucket (moto's real S3
server) under the pipeline's prefix, the index there lists the validations of every run
(each run's step disk is its own, as a pod's is), and the suite check's `data_docs` link is
a presigned URL that opens in headless Chromium with nothing reachable but loopback: the
page renders styled and asks no other host for anything."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import dagster as dg
import pytest
from playwright.sync_api import BrowserContext, expect, sync_playwright

from ml_pipelines_tests.prod.common import PIPELINE, credit_spec, prod_pipeline_defs
from ml_pipelines_tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = pytest.mark.timeout(600)

CHECK = "matches_expectation_suite"
LOOPBACK = re.compile(r"^(data:|https?://127\.0\.0\.1[:/])")


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(60_000)
        try:
            yield context
        finally:
            context.close()


def _validate(scratch) -> tuple[str, dict[str, dg.MetadataValue]]:
    """raw_data and its suite check in the prod profile; a fresh scratch disk each time, as a pod's."""
    for leftover in scratch.glob("ml_pipelines/work/*"):
        shutil.rmtree(leftover)
    job = prod_pipeline_defs(credit_spec()).resolve_job_def(f"{PIPELINE}_retrain_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False,
                                        asset_selection=[dg.AssetKey([PIPELINE, "raw_data"])])
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK]
    return result.run_id, evaluation.metadata


def test_validation_pages_live_in_the_bucket_and_open_offline(prod_env, browser: BrowserContext):
    first_run, _ = _validate(prod_env.scratch)
    run_id, metadata = _validate(prod_env.scratch)
    docs = prod_env.key("registry", PIPELINE, "data_docs")
    keys = prod_env.bucket.keys(docs + "/")
    pages = [k for k in keys if "/validations/" in k]
    assert len(pages) == 2 and {f"{docs}/index.html", f"{docs}/offline_index.html"} <= set(keys)
    page_key = next(k for k in pages if f"/{run_id}/" in k)
    assert page_key.startswith(f"{docs}/validations/{PIPELINE}_raw_data/{run_id}/")
    assert page_key.endswith("/pipeline-raw_data.html")
    index = prod_env.bucket.get(f"{docs}/index.html").decode()
    assert f">{first_run}</a>" in index and f">{run_id}</a>" in index  # every run's page, from the listing
    assert metadata["data_docs_object"].value == f"s3://{prod_env.bucket.name}/{page_key}"

    # the link the UI shows: presigned (the bucket is private), to the page, on the S3 endpoint
    link = metadata["data_docs"]
    assert isinstance(link, dg.UrlMetadataValue), link
    url = link.url
    assert urlsplit(url).path == f"/{prod_env.bucket.name}/{page_key}" and "X-Amz-Signature=" in url

    requested, refused, errors = [], [], []

    def offline(route):
        requested.append(route.request.url)
        if LOOPBACK.match(route.request.url):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page = browser.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route("**/*", offline)
    try:
        response = page.goto(url)
        assert response is not None and response.status == 200
        expect(page.get_by_role("row", name=f"Run Name {run_id}")).to_be_visible()  # GX's Info table
        # styled by the inlined offline styles, not the browser's defaults
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(248, 249, 250)"
        assert page.evaluate("getComputedStyle(document.querySelector('table')).borderCollapse") == "collapse"
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "data_docs_prod_bucket.png"), full_page=True)
    finally:
        page.close()
    assert refused == [], refused  # no CDN, no logo from GX's bucket
    assert errors == [], errors  # GX's page scripts find the no-op jQuery stand-in
    assert all(u.startswith(prod_env.bucket.endpoint) or u.startswith("data:") for u in requested), requested
