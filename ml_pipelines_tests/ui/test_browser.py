"""The analyst's view in a real browser: headless Chromium (Debian's `chromium`
package) driven by Playwright against the same `dagster dev` as the GraphQL tests.

- the asset graph of each pipeline's group shows every asset and the lineage edges
  between them, edge by edge;
- the evaluation pages render their plots (inline data:image/png) as images;
- the model card that model_package links opens from disk and renders every section,
  with no request leaving file:// and data: URLs.

Screenshots go to ml_pipelines_tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from ml_pipelines.core.model_card import SECTIONS
from ml_pipelines_tests.ui.conftest import LOCATION, AnalystWorld

pytestmark = pytest.mark.timeout(600)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
UI_TIMEOUT_MS = 60_000  # generous: the UI is slow to load on a busy 2-core machine
MATERIALIZED_NODE = '[style*="--minimal-bg: var(--color-background-green)"]'
SECTION_TABLE = "xpath=following-sibling::*[self::table or self::h2][1]"
EDGE_TOLERANCE_PX = 12  # an edge starts at its source's right side and ends at its target's left side

LATEST_METADATA_QUERY = """
query Latest($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetMaterializations(limit: 1) {
      metadataEntries {
        label
        ... on PathMetadataEntry { path }
        ... on UrlMetadataEntry { url }
        ... on MarkdownMetadataEntry { mdStr }
      }
    }
  }
}
"""

GRAPH_JS = """
() => ({
  nodes: [...document.querySelectorAll("svg foreignObject")].map(f => ({
    x: +f.getAttribute("x"), y: +f.getAttribute("y"),
    w: +f.getAttribute("width"), h: +f.getAttribute("height"), text: f.textContent,
  })),
  edges: [...document.querySelectorAll('svg path[stroke^="var(--color-lineage-edge"]')].map(p => p.getAttribute("d")),
})
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[BrowserContext]:
    assert CHROMIUM.exists(), "headless tests need Debian's chromium: apt-get install -y chromium"
    SCREENSHOTS.mkdir(exist_ok=True)
    expect.set_options(timeout=UI_TIMEOUT_MS)  # assertions wait as long as page actions
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh user data dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _latest_metadata(world: AnalystWorld, pipeline: str, stage: str) -> dict[str, dict[str, Any]]:
    (node,) = world.graphql(LATEST_METADATA_QUERY, {"key": {"path": [pipeline, stage]}})["assetNodes"]
    (materialization,) = node["assetMaterializations"]
    return {entry["label"]: entry for entry in materialization["metadataEntries"]}


def _endpoints(d: str) -> tuple[tuple[float, float], tuple[float, float]]:
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    assert d.startswith("M") and len(numbers) >= 4, f"unexpected edge path {d!r}"
    return (numbers[0], numbers[1]), (numbers[-2], numbers[-1])


def _label(name: str) -> re.Pattern:
    """An asset's name as the graph draws it: whole, or shortened with an ellipsis in the
    middle when it is long (production_performance -> produ…_performance)."""
    shortened = "|".join(
        f"{re.escape(name[:i])}…{re.escape(name[j:])}" for i in range(1, len(name)) for j in range(i + 1, len(name))
    )
    return re.compile(rf"^\s*(?:{re.escape(name)}|{shortened})\s*$")


def _names_in(text: str, names: list[str]) -> list[str]:
    """The asset names a graph node's text shows (whole words, or shortened as _label allows)."""
    words = re.findall(r"[A-Za-z0-9_…]+", text)
    return [n for n in names if any(_label(n).match(word) for word in words)]


def _node_at(nodes: list[dict[str, Any]], x: float, y: float, side: str) -> str | None:
    for node in nodes:
        edge_x = node["x"] + node["w"] if side == "right" else node["x"]
        if abs(x - edge_x) <= EDGE_TOLERANCE_PX and node["y"] <= y <= node["y"] + node["h"]:
            return node["name"]
    return None


def _shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000, f"{path} looks empty"
    return path


@pytest.mark.parametrize("pipeline", ["credit_default", "diabetes_progression"])
def test_asset_graph_shows_every_asset_and_its_lineage(analyst_world: AnalystWorld, page: Page, pipeline: str):
    keys = analyst_world.asset_keys(pipeline)
    names = [k.path[-1] for k in keys]
    graph = analyst_world.defs.resolve_asset_graph()
    expected_edges = {
        (parent.path[-1], key.path[-1]) for key in keys for parent in graph.get(key).parent_keys
    }
    assert len(expected_edges) >= 5

    page.goto(f"{analyst_world.url}/locations/{LOCATION}/asset-groups/{pipeline}/lineage")
    for name in names:
        node = page.locator("svg foreignObject").filter(has=page.get_by_text(_label(name)))
        expect(node).to_have_count(1)
        expect(node).to_be_visible()
        # drawn as materialized (green) once the live status arrives
        expect(node.locator(MATERIALIZED_NODE)).to_have_count(1)
    expect(page.locator('svg path[stroke^="var(--color-lineage-edge"]')).to_have_count(len(expected_edges))
    drawn = page.evaluate(GRAPH_JS)
    _shot(page, f"asset_graph_{pipeline}.png")

    nodes = []
    for box in drawn["nodes"]:
        found = _names_in(box["text"], names)
        assert len(found) == 1, f"graph node {box['text']!r} is not exactly one of {names}"
        nodes.append({**box, "name": found[0]})
    assert sorted(n["name"] for n in nodes) == sorted(names), "the graph shows assets of another group"
    edges = set()
    for d in drawn["edges"]:
        (sx, sy), (ex, ey) = _endpoints(d)
        source, target = _node_at(nodes, sx, sy, "right"), _node_at(nodes, ex, ey, "left")
        assert source and target, f"edge {d} does not join two asset nodes"
        edges.add((source, target))
    assert len(drawn["edges"]) >= 5
    assert edges == expected_edges


@pytest.mark.parametrize("pipeline", ["credit_default", "diabetes_progression"])
def test_evaluation_page_renders_the_plots(analyst_world: AnalystWorld, page: Page, pipeline: str):
    metadata = _latest_metadata(analyst_world, pipeline, "evaluation")
    plots = sorted(label.removeprefix("plot/") for label in metadata if label.startswith("plot/"))
    expected = {"feature_importance"} | (
        {"roc_curve", "pr_curve", "confusion_matrix"}
        if analyst_world.specs[pipeline].task == "classification"
        else {"residuals", "predicted_vs_actual"}
    )
    assert set(plots) == expected
    for plot in plots:
        assert metadata[f"plot/{plot}"]["mdStr"].startswith(f"![{plot}](data:image/png;base64,")

    page.goto(f"{analyst_world.url}/assets/{pipeline}/evaluation")
    expect(page.get_by_text("Holdout metrics", exact=False).first).to_be_visible()
    # the metrics table is markdown rendered inline
    metrics_row = page.locator("tr").filter(has=page.get_by_text("metrics", exact=True))
    expect(metrics_row.locator("table").first).to_be_visible()
    for plot in plots:
        row = page.locator("tr").filter(has=page.get_by_text(f"plot/{plot}", exact=True))
        expect(row).to_have_count(1)
        row.get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        image = dialog.locator(f'img[alt="{plot}"]')
        expect(image).to_be_visible()
        image.evaluate("img => img.decode()")  # resolves once the bitmap is ready, rejects if it cannot decode
        src, width, height = image.evaluate("img => [img.src, img.naturalWidth, img.naturalHeight]")
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert width > 100 and height > 100, f"{pipeline} plot {plot} rendered {width}x{height}"
        if plot in ("roc_curve", "residuals"):
            _shot(page, f"evaluation_{pipeline}_{plot}.png")
        dialog.get_by_role("button", name="Close").click()
        expect(dialog).to_have_count(0)


def test_model_card_link_in_model_package_opens_and_renders_every_section(analyst_world: AnalystWorld, page: Page):
    pipeline = "credit_default"
    metadata = _latest_metadata(analyst_world, pipeline, "model_package")
    version = analyst_world.registry.get_alias(pipeline, "champion")
    url = metadata["model_card"]["url"]
    # served by `ml-pipelines reports` over HTTP (Chromium refuses file:// links from the UI)
    assert url == f"{analyst_world.reports_url}/registry/{pipeline}/cards/{version}.html", url

    # the analyst clicks the link the asset page shows; it opens in a new tab
    page.goto(f"{analyst_world.url}/assets/{pipeline}/model_package")
    row = page.locator("tr").filter(has=page.get_by_text("model_card", exact=True))
    link = row.locator(f'a[href="{url}"]').first  # the URL itself (and an "open in a new tab" icon)
    expect(link).to_be_visible()
    requested: list[str] = []
    with page.context.expect_page() as opened:
        link.click()
    page = opened.value
    page.on("request", lambda request: requested.append(request.url))
    page.wait_for_load_state()
    assert page.url == url
    expect(page.locator("h1")).to_have_text(f"Model card: {pipeline} {version}")
    for section in SECTIONS:
        heading = page.locator("h2").filter(has_text=re.compile(rf"^{re.escape(section)}$"))
        expect(heading).to_have_count(1)
        expect(heading).to_be_visible()
    for section in (SECTIONS[1], SECTIONS[2], SECTIONS[3], SECTIONS[4], SECTIONS[6], SECTIONS[7]):
        # the section's table: the first table or heading after its h2 must be a table
        table = page.locator("h2", has_text=section).locator(SECTION_TABLE)
        expect(table).to_have_js_property("tagName", "TABLE")
        expect(table.locator("tbody tr").first).to_be_visible()
    gate = page.locator("h2", has_text=SECTIONS[5]).locator("xpath=following-sibling::p[1]")
    expect(gate).to_contain_text("Decision: passed on roc_auc")
    drift = page.locator("h2", has_text=SECTIONS[6]).locator(SECTION_TABLE)
    expect(drift).to_contain_text(analyst_world.landed_batch)  # the monitor run of the fixture
    record = analyst_world.registry.get_version(pipeline, version)
    images = page.locator("img")
    expect(images).to_have_count(len([a for a in record.artifacts if a.startswith("plots/")]))
    for i in range(images.count()):
        image = images.nth(i)
        image.evaluate("img => img.decode()")
        src, width = image.evaluate("img => [img.src, img.naturalWidth]")
        assert src.startswith("data:image/png;base64,") and width > 100, (src[:40], width)
    # the drift report links the same card
    assert _latest_metadata(analyst_world, pipeline, "drift_report")["model_card"]["url"] == url
    assert all(u.startswith((analyst_world.reports_url, "data:")) for u in requested), requested
    _shot(page, "model_card_credit_default.png", full_page=True)


def test_plots_tab_charts_the_best_cv_score_of_training(analyst_world: AnalystWorld, page: Page):
    """trained_model's numeric metadata (the experiment history's summary) is charted too."""
    page.goto(f"{analyst_world.url}/assets/credit_default/trained_model")
    try:
        page.get_by_text("Plots", exact=True).first.click()
        for label in ("best_cv_score", "candidates_evaluated"):
            expect(page.get_by_text(label, exact=True).first).to_be_visible()
        expect(page.locator("canvas").first).to_be_visible()
    finally:
        _shot(page, "trained_model_plots_tab_credit_default.png", full_page=True)


def test_plots_tab_charts_the_numeric_metrics(analyst_world: AnalystWorld, page: Page):
    """The metrics are numeric metadata, so the metadata section of the asset's overview offers
    Dagster's Plots, one chart per numeric entry across materializations; the images stay in the
    Table view."""
    page.goto(f"{analyst_world.url}/assets/credit_default/evaluation")
    try:
        page.get_by_text("Plots", exact=True).first.click()
        for label in ("metric/roc_auc", "test_rows"):
            expect(page.get_by_text(label, exact=True).first).to_be_visible()
        expect(page.locator("canvas").first).to_be_visible()
        assert page.get_by_text("plot/roc_curve", exact=True).count() == 0, "an image entry is not a chart"
    finally:
        _shot(page, "evaluation_plots_tab_credit_default.png", full_page=True)


CHECK_METADATA_QUERY = """
query Check($key: AssetKeyInput!) {
  assetNodes(assetKeys: [$key]) {
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          executionForLatestMaterialization {
            runId
            evaluation { metadataEntries { label ... on UrlMetadataEntry { url } } }
          }
        }
      }
    }
  }
}
"""


def test_data_docs_link_opens_offline_with_the_run_id(analyst_world: AnalystWorld, page: Page):
    """The suite check's data_docs link opens over HTTP with no internet (every request off
    loopback is refused): the validation page is named by the Dagster run id, styled, asks no
    other host for anything (GX's CDN links are rewritten away) and throws no script error; its
    Home link and the offline index list it with raw_data as the data asset."""
    pipeline = "credit_default"
    (node,) = analyst_world.graphql(CHECK_METADATA_QUERY, {"key": {"path": [pipeline, "raw_data"]}})["assetNodes"]
    (check,) = [c for c in node["assetChecksOrError"]["checks"] if c["name"] == "matches_expectation_suite"]
    execution = check["executionForLatestMaterialization"]
    run_id = execution["runId"]
    url = {e["label"]: e.get("url") for e in execution["evaluation"]["metadataEntries"]}["data_docs"]
    docs_root = f"{analyst_world.reports_url}/work/{pipeline}/gx/uncommitted/data_docs/local_site/"
    assert url.startswith(f"{docs_root}validations/{pipeline}_raw_data/{run_id}/"), url
    assert url.endswith("/pipeline-raw_data.html"), url

    refused: list[str] = []
    loopback = re.compile(r"^(data:|https?://127\.0\.0\.1[:/])")

    def offline(route):
        if loopback.match(route.request.url):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(url)
    expect(page.get_by_role("row", name=f"Run Name {run_id}")).to_be_visible()  # the Info table
    # styled by the inlined offline styles, not the browser's defaults
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(248, 249, 250)", background
    _shot(page, "data_docs_credit_default.png", full_page=True)

    page.get_by_role("link", name="Home").first.click()  # the page's own navigation, offline too
    expect(page).to_have_url(f"{docs_root}offline_index.html")
    row = page.locator("tr").filter(has=page.get_by_role("link", name=run_id))
    expect(row).to_have_count(1)
    expect(row).to_contain_text("raw_data")
    row.get_by_role("link", name=run_id).click()
    expect(page).to_have_url(url)
    assert refused == [], refused  # no CDN stylesheet, script or logo is even asked for
