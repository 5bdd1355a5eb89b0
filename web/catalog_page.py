"""The catalog page: a GET form (works without JavaScript; web/static/hub.js searches as you type
and swaps the results in), filters, sorts and pages with stable URLs, one card per model.

A bad sort, page, GPU need or state does not fail the page: it shows the default instead, says what
was wrong and which values there are, and answers 400 (like the model page's window picker).
GET /api/v1/models serves the same listing as JSON (`api_listing`), where such a value is a 400."""

from __future__ import annotations

from dataclasses import fields, replace

from flask import render_template, url_for

from hub.errors import Invalid
from hub.listing import FILTERS, GPU_NEEDS, MAX_PER_PAGE, SORTS, STATES, CatalogQuery, parse_query
from web.context import get_hub

SORT_LABELS = {
    "popular": "most used (30 days)", "accuracy": "most accurate", "recent": "recently published",
    "name": "name (A–Z)",
}  # fmt: skip
MAX_TAGS = 30  # the most common tags offered as links; the chosen one always


def render(args) -> tuple[str, int]:
    """The page for the request's arguments, and its status."""
    query, problems = parse_query(args)
    listing = get_hub().catalog_page(query)
    problems += listing["problems"]
    page = {
        "query": query, "listing": listing, "models": listing["models"], "problems": problems,
        "facets": listing["facets"], "tags": _tags(listing["facets"]["tag"]),
        "sorts": [(s, SORT_LABELS[s]) for s in SORTS], "gpu_needs": GPU_NEEDS, "states": STATES,
        "filtered": any(getattr(query, k) for k in ("q", *FILTERS)),
        "link": lambda **changes: link(query, **changes), "pager": pager(query, listing),
        "param_order": " ".join(f.name for f in fields(CatalogQuery)),
    }  # fmt: skip
    return render_template("catalog.html", **page), 400 if problems else 200


def link(query: CatalogQuery, **changes) -> str:
    """The catalog's URL for `query` with `changes`: only what differs from the defaults, in a fixed
    order, so that one view has one URL. A change of filter starts again at page 1."""
    if set(changes) - {"page"}:
        changes.setdefault("page", 1)
    return url_for("pages.catalog", **query.params(**changes))


def pager(query: CatalogQuery, listing: dict) -> dict:
    """Previous, next and numbered page links around the current page (first and last always)."""
    page, pages = listing["page"], listing["pages"]
    numbers = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    return {
        "prev": link(query, page=page - 1) if page > 1 else None,
        "next": link(query, page=page + 1) if page < pages else None,
        "pages": [(n, link(query, page=n)) for n in numbers],
        "first": (page - 1) * listing["per_page"] + 1 if listing["total"] else 0,
        "last": min(page * listing["per_page"], listing["total"]),
    }


def _tags(facet: list[dict]) -> list[dict]:
    shown = facet[:MAX_TAGS]
    return shown + [t for t in facet[MAX_TAGS:] if t["chosen"]]


# --- the same listing as JSON: GET /api/v1/models --------------------------------------------------

API_KEYS = ("models", "total", "page", "pages", "per_page", "facets")


def api_listing(args) -> dict:
    """GET /api/v1/models: the cards with the total and the facets. Without `page` or `per_page` every
    model comes on one page (per_page 0), and without `sort` by name, as before the catalog had sorts.
    A value that is not one is a 400 naming it and the valid ones."""
    query, problems = parse_query(args)
    if not args.get("sort"):
        query = replace(query, sort="name")
    if not (args.get("page") or args.get("per_page")):
        query = replace(query, per_page=0)
    listing = get_hub().catalog_page(query) if not problems else {"problems": problems}
    if listing["problems"]:
        raise Invalid(" ".join(listing["problems"]))
    return {key: listing[key] for key in API_KEYS}


def api_parameters(query) -> list[dict]:
    """The OpenAPI parameters of GET /api/v1/models; `query(name, description)` writes one."""

    def typed(name: str, text: str, **schema) -> dict:
        return query(name, text) | {"schema": schema}

    sorts = "popular: calls in 30 days; accuracy: Wilson lower bound; recent: last publish; name (default)."
    return [
        query("q", "Text in the name, summary, task or tags."), query("task", "Exact task."),
        query("framework", "Exact framework (the version calls go to)."), query("tag", "A tag."),
        typed("gpu", "GPU need.", type="string", enum=list(GPU_NEEDS)),
        typed("state", "Deployment state of the version calls go to.", type="string", enum=list(STATES)),
        typed("sort", sorts, type="string", enum=list(SORTS)),
        typed("page", "Page number (default: every model on one page).", type="integer", minimum=1),
        typed("per_page", "Models per page (default with page: 24).", type="integer", minimum=1,
              maximum=MAX_PER_PAGE),
    ]  # fmt: skip
