"""core.data_docs: GX Data Docs pages that fetch nothing from the network, and validation pages
published to the registry's store (each store of the registry suite: local files, and S3 on
moto's real server) with an index rebuilt from the store's listing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_pipelines.core.data_docs import (
    OFFLINE_INDEX,
    OFFLINE_MARK,
    offline_page,
    page_in_site,
    publish_validation,
)
from ml_pipelines.core.validation import infer_schema, run_suite


# anything a browser would fetch from another host: stylesheets, scripts, images, CSS url()s
FETCHED_ELSEWHERE = re.compile(r"""(?:<link\b[^>]*href|<script\b[^>]*src|<img\b[^>]*src)=["']https?://|url\(\s*["']?https?://""",
                               re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, list[str]]:
    """A GX file context's site after two validations, named run-1 and run-2."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 200), "income": rng.normal(5e4, 9e3, 200)})
    project = tmp_path_factory.mktemp("docs") / "credit"
    reports = [run_suite(frame, infer_schema(frame), suite_name="credit_raw_data", project_dir=project,
                         run_name=name) for name in ("run-1", "run-2")]
    site = Path(reports[0].docs_site)
    return site, [page_in_site(r.docs_path, site) for r in reports]


def test_gx_pages_link_cdns_and_the_rewritten_pages_fetch_nothing(site):
    folder, pages = site
    page = (folder / pages[0]).read_text()
    assert OFFLINE_MARK in page  # run_suite rewrote the site after building it
    assert not FETCHED_ELSEWHERE.search(page), FETCHED_ELSEWHERE.search(page)
    assert "ml_pipelines: styles for Great Expectations Data Docs" in page  # inlined, styled offline
    assert "window.$=window.jQuery=" in page  # GX's inline scripts find a no-op jQuery
    assert 'href="../../../../offline_index.html"' in page and 'href="../../../../index.html"' not in page
    # what GX writes, before the rewrite: Bootstrap, Font Awesome and jQuery from CDNs, a logo from GX's bucket
    original = (
        '<head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
        '<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
        "<style>.x { background: url('https://great-expectations-web-assets.s3.amazonaws.com/logo.png') }</style>"
        '</head><body><a href="../../index.html"><img src="https://great-expectations-web-assets.s3.amazonaws.com/'
        'logo-long.png?dataContextId=1"/></a><a href="https://greatexpectations.io">GX</a></body>'
    )
    rewritten = offline_page(original)
    assert FETCHED_ELSEWHERE.search(original) and not FETCHED_ELSEWHERE.search(rewritten)
    assert '<a href="https://greatexpectations.io">GX</a>' in rewritten  # a link is not a fetch: kept
    assert '<a href="../../offline_index.html"><span class="navbar-brand">Great Expectations</span></a>' in rewritten
    assert offline_page(rewritten) == rewritten


def test_a_published_page_and_the_index_list_every_validation_in_the_store(site, store):  # noqa: F811
    folder, pages = site
    first = publish_validation(store, "credit", folder, pages[0])
    assert first == f"credit/data_docs/{pages[0]}"
    assert store.get(first).decode() == (folder / pages[0]).read_text()
    second = publish_validation(store, "credit", folder, pages[1])
    index = store.get(f"credit/data_docs/{OFFLINE_INDEX}").decode()
    assert store.get("credit/data_docs/index.html").decode() == index
    assert index.count("<tr><td>") == 2
    for page, run in zip((first, second), ("run-1", "run-2")):
        link = page.removeprefix("credit/data_docs/")
        assert f'<a href="{link}">{run}</a></td><td>raw_data</td>' in index
    assert not FETCHED_ELSEWHERE.search(index) and "<script" not in index
    assert sorted(store.list("credit/data_docs/")) == sorted([first, second, "credit/data_docs/index.html",
                                                              f"credit/data_docs/{OFFLINE_INDEX}"])
    with pytest.raises(ValueError, match="not a validation page"):
        publish_validation(store, "credit", folder, "index.html")
