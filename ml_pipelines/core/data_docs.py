"""Great Expectations Data Docs that open anywhere: styled with no internet, and kept in the
bucket in the prod profile.

Offline. GX 1.x pages link Bootstrap, Font Awesome, bootstrap-table, Vega and jQuery from
CDNs, and a logo from GX's own bucket. Without internet those requests fail (or hang until
they time out), and the page scripts that call jQuery throw. After every build the site's
pages are rewritten (offline_page): every external stylesheet, script and image is taken
out, the project's offline styles are inlined (GX inlines them already as its custom
styles; see validation._gx_context), a no-op stand-in answers the jQuery and Bootstrap calls
of GX's inline scripts, and the pages' Home links point at `offline_index.html`, a plain
list of every validation (GX's own index builds its table with scripts from CDNs).
The rewritten page requests nothing from the network.

In the bucket. In prod a step runs in a pod whose disk goes with it, so each validation
page is uploaded to the registry's store under the pipeline's prefix
(`<pipeline>/data_docs/validations/<suite>/<run name>/<run time>/<asset>.html`), and the
index pages there (index.html and offline_index.html, both the plain list) are rebuilt
from the bucket's listing, so they list the validations of every pod. The UI links a
validation page by a presigned URL (core.reports), as it links model cards; a page is
self-contained, so it renders from that one URL.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ml_pipelines.core.identifiers import check_pipeline_name
from ml_pipelines.core.storage import ObjectStore

OFFLINE_STYLES = Path(__file__).with_name("data_docs_offline.css")
OFFLINE_INDEX = "offline_index.html"
DOCS_DIR = "data_docs"
OFFLINE_MARK = "<!-- ml_pipelines: offline page -->"
# what a page would fetch from elsewhere: stylesheets, scripts, images, CSS url()s
_EXTERNAL_LINK = re.compile(r"""<link\b[^>]*\bhref=["']https?://[^>]*>\s*""", re.IGNORECASE)
_EXTERNAL_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc=["']https?://[^>]*>\s*</script>\s*""", re.IGNORECASE)
_EXTERNAL_IMAGE = re.compile(r"""<img\b[^>]*\bsrc=["']https?://[^>]*>""", re.IGNORECASE)
_EXTERNAL_CSS_URL = re.compile(r"""url\(\s*["']?https?://[^)]*\)""", re.IGNORECASE)
_HOME_LINK = re.compile(r'href="((?:\.\./)*)index\.html"')
# GX's inline scripts call $(...).modal(), .fadeIn(), $(document).ready(...): offline there is no
# jQuery, so every such call goes to a stand-in that accepts anything and does nothing
_JQUERY_STAND_IN = (
    "<script>/* ml_pipelines: jQuery and Bootstrap come from CDNs, unreachable offline; GX's page "
    "scripts call this no-op stand-in instead */(function(){var f=function(){return p};"
    "var p=new Proxy(f,{get:function(t,k){return k===Symbol.toPrimitive?function(){return ''}:f}});"
    "window.$=window.jQuery=p;})();</script>"
)
_LOGO = '<span class="navbar-brand">Great Expectations</span>'


def offline_page(page: str) -> str:
    """A GX page that fetches nothing from the network (see the module's docstring); idempotent."""
    if OFFLINE_MARK in page:
        return page
    page = _EXTERNAL_SCRIPT.sub("", page)
    page = _EXTERNAL_LINK.sub("", page)
    page = _EXTERNAL_IMAGE.sub(_LOGO, page)
    page = _EXTERNAL_CSS_URL.sub("none", page)
    page = _HOME_LINK.sub(lambda m: f'href="{m.group(1)}{OFFLINE_INDEX}"', page)
    head = re.search(r"<head[^>]*>", page, re.IGNORECASE)
    at = head.end() if head else 0
    return f"{page[:at]}{OFFLINE_MARK}{_JQUERY_STAND_IN}{page[at:]}"


def make_site_offline(site: Path) -> int:
    """Rewrite every GX page of a Data Docs site with offline_page; returns how many changed.
    GX's own index.html keeps its CDN table (it lists nothing offline; offline_index.html does)."""
    changed = 0
    for path in site.rglob("*.html"):
        if path.parent == site and path.name in ("index.html", OFFLINE_INDEX):
            continue
        text = path.read_text(encoding="utf-8")
        rewritten = offline_page(text)
        if rewritten != text:
            path.write_text(rewritten, encoding="utf-8")
            changed += 1
    return changed


def _row(relative: str) -> tuple[str, str, str, str, str]:
    """(run time, suite, run name, data asset, link) of `validations/<suite>/<run>/<time>/<batch>-<asset>.html`."""
    suite, run_name, run_time, page = relative.split("/")[-4:]
    return run_time, suite, run_name, page.removesuffix(".html").split("-", 1)[-1], relative


def is_validation_page(relative: str) -> bool:
    parts = relative.split("/")
    return len(parts) == 5 and parts[0] == "validations" and parts[-1].endswith(".html")


def offline_index_html(pages: Iterable[str]) -> str:
    """The plain index of validation pages (paths relative to the site): newest first, with the
    suite, the run name (the Dagster run id) and the data asset; styled inline, no scripts."""
    rows = sorted((_row(p) for p in pages if is_validation_page(p)), reverse=True)
    cells = "\n".join(
        f'<tr><td>{html.escape(t)}</td><td>{html.escape(s)}</td><td><a href="{html.escape(link)}">'
        f"{html.escape(r)}</a></td><td>{html.escape(a)}</td></tr>"
        for t, s, r, a, link in rows
    )
    styles = OFFLINE_STYLES.read_text()
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Validations</title><style>{styles}</style>"
        f"</head><body><div class='navbar'><span class='navbar-brand'>Great Expectations Data Docs</span></div>"
        f"<div class='container-fluid'><h1>Validations</h1><table><thead><tr><th>run time</th><th>suite</th>"
        f"<th>run name (Dagster run id)</th><th>data asset</th></tr></thead><tbody>{cells}</tbody></table>"
        f"</div></body></html>"
    )


def write_offline_index(site: Path) -> Path:
    """`offline_index.html` beside GX's index.html: every validation page of the local site."""
    pages = [p.relative_to(site).as_posix() for p in (site / "validations").glob("*/*/*/*.html")]
    index = site / OFFLINE_INDEX
    index.write_text(offline_index_html(pages), encoding="utf-8")
    return index


def page_in_site(docs_url: str, site: Path) -> str:
    """The path, relative to the site, of the page a `file://` Data Docs URL names."""
    path = Path(unquote(urlsplit(docs_url).path)) if docs_url.startswith("file://") else Path(docs_url)
    return path.resolve().relative_to(site.resolve()).as_posix()


def docs_prefix(pipeline: str) -> str:
    return f"{check_pipeline_name(pipeline)}/{DOCS_DIR}/"


def publish_validation(store: ObjectStore, pipeline: str, site: Path, page: str) -> str:
    """Upload one validation page of a local site (offline already) under the pipeline's prefix of
    the store, then rebuild the store's index pages from its listing; returns the page's key."""
    if not is_validation_page(page):
        raise ValueError(f"{page!r} is not a validation page of a Data Docs site")
    prefix = docs_prefix(pipeline)
    key = f"{prefix}{page}"
    store.put(key, offline_page((site / page).read_text(encoding="utf-8")).encode())
    # every pod's validations, this one included; a run that publishes at the same moment may be
    # missing from this index until the next validation rebuilds it (its own page is always there)
    pages = [k[len(prefix):] for k in store.list(f"{prefix}validations/")]
    index = offline_index_html(pages).encode()
    store.put(f"{prefix}{OFFLINE_INDEX}", index)
    store.put(f"{prefix}index.html", index)
    return key
