"""HTML pages (server-rendered): the catalog, a model's page, a build's log.

One data dict per page, built from the Hub's plain dicts. Every value from a model is hostile:
templates rely on autoescaping, and only the nh3-sanitised card is marked safe (web/markdown.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from hub.errors import BadInput, HubError, Invalid
from vocab.states import IN_FLIGHT, DeploymentStatus
from web import catalog_page, charts, snippets, tryit
from web.auth import may_change, needs, owner_only, principal
from web.context import client, get_hub, prefers_json
from web.markdown import render_card

blueprint = Blueprint("pages", __name__)
WINDOWS = ("1h", "24h", "7d", "30d", "all")  # the scorecard's window picker
DEFAULT_WINDOW = "24h"
# An Evidently report runs its own inline scripts: in a sandbox, with no access to the hub's origin.
REPORT_CSP = (
    "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'unsafe-inline'; img-src data:; font-src data:"
)


# --- catalog ------------------------------------------------------------------------------


@blueprint.get("/")
@needs("read")
def catalog():
    return catalog_page.render(request.args)  # web/catalog_page.py


# --- model page ---------------------------------------------------------------------------


@blueprint.get("/models/<path:name>")
@needs("read")
def model(name):
    """The model page as HTML, or its data as JSON (`Accept: application/json`, or NAME.json: a
    model name has no dots, vocab/names.py, so a trailing `.json` is never part of one)."""
    as_json = name.endswith(".json")
    name = name.removesuffix(".json")
    args = request.args
    page = model_page(name, args.get("version") or None, window=args.get("window") or DEFAULT_WINDOW)
    status = 400 if page["window_error"] else 200
    if as_json or prefers_json():
        return jsonify(page_data(page)), status, {"Vary": "Accept"}
    html = render_template("model.html", **page, in_flight=sorted(IN_FLIGHT))
    return html, status, {"Vary": "Accept"}


PAGE_ONLY = ("form", "feedback_error", "feedback_id")  # what the HTML page keeps for its forms


def page_data(page: dict) -> dict:
    """The model page's dict as JSON data: the same values, less what only its forms use."""
    return {key: value for key, value in page.items() if key not in PAGE_ONLY}


@blueprint.post("/models/<path:name>/feedback")
@needs("feedback")
def feedback(name):
    form = request.form
    ref = form.get("version") or None
    try:
        row = _send_feedback(name, ref, form.get("prediction_id", "").strip(), feedback_fields(form))
    except Invalid as e:
        page = model_page(name, ref, feedback_error=e.message, form=form)
        return render_template("model.html", **page, in_flight=sorted(IN_FLIGHT)), 400
    target = url_for("pages.model", name=name, version=ref, feedback=row["id"])
    return redirect(f"{target}#feedback", code=303)


def _send_feedback(name: str, ref: str | None, prediction_id: str, fields: dict) -> dict:
    hub = get_hub()
    if prediction_id:
        return hub.feedback(prediction_id, fields, client())
    return hub.model_feedback(name, fields, ref, client())


def dataset_list(name: str) -> list[dict] | None:
    """The model's dataset snapshots, for a caller who may read them (the `publish` scope and the
    model's owner: they hold the logged inputs); None for anyone else."""
    hub = get_hub()
    try:
        hub.require(principal(), "publish")
        owner_only(name)
    except HubError:
        return None
    return hub.datasets(name)["datasets"]


def feedback_fields(form) -> dict:
    """The HTML form's strings as the hub's feedback fields; unset ones are left out."""
    correct = {"yes": True, "no": False}.get(form.get("correct", ""))
    rating = form.get("rating", "").strip()
    fields = {
        "correct": correct,
        "label": form.get("label", "").strip() or None,
        "rating": int(rating) if rating.isdigit() else rating or None,
        "comment": form.get("comment", "").strip() or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def model_page(
    name: str, ref: str | None, feedback_error: str = "", form=None, window: str = DEFAULT_WINDOW
) -> dict:
    """Everything the model page shows, for one version (`ref`, else production, else latest);
    its scorecard over `window` (the default window, and why, when that is not one)."""
    hub = get_hub()
    model, version = hub.model(name), hub.version(name, ref)
    number = version["version"]
    card, window, window_error = scorecard_over(name, number, window)
    return {
        "model": model, "version": version, "ref": ref, "card": render_card(version["card"]),
        "ready": version["deployment"]["status"] == DeploymentStatus.READY,
        "scorecard": card, "windows": WINDOWS, "window": window, "window_error": window_error,
        "charts": charts.scorecard_charts(card, hub.drift_history(name, number)["runs"]),
        **build_history(name, number),
        "files": hub.version_files(name, number)["files"],
        "alerts": hub.alerts(name), "datasets": dataset_list(name), "lineage": hub.lineage(name)["tree"],
        "api": api_snippets(name, ref and number, version),
        "tryit": tryit.form(version, hub.reference_columns(name, number)),
        "feedback_id": request.args.get("feedback", type=int),
        "feedback_error": feedback_error, "form": form or {},
    }  # fmt: skip


def build_history(name: str, number: str) -> dict:
    """The version's recent builds, and the latest with its log's tail; `following`: it still runs."""
    history = get_hub().builds(name, number)
    latest = history["latest"]
    following = bool(latest) and latest["status"] in IN_FLIGHT
    return {"build": latest, "builds": history["builds"], "build_following": following}


def scorecard_over(name: str, number: str, window: str) -> tuple[dict, str, str]:
    """(scorecard, window, problem): over `window`, else over DEFAULT_WINDOW with what was wrong."""
    hub = get_hub()
    try:
        return hub.scorecard(name, number, window=window), window, ""
    except (Invalid, BadInput) as e:
        shown = f"Showing the last {DEFAULT_WINDOW}; pick one of {', '.join(WINDOWS)}."
        return hub.scorecard(name, number, window=DEFAULT_WINDOW), DEFAULT_WINDOW, f"{e.message} {shown}"


def api_snippets(name: str, pinned: str | None, version: dict) -> dict:
    """Endpoints, sample inputs and curl calls; pinned to a version only when the page is."""
    inputs = snippets.sample_inputs(version["examples"], version["inputs"])
    predict = url_for("api.predict", name=name, version=pinned, _external=True)
    v2 = url_for("v2.infer", name=name, version=pinned, _external=True)
    return {
        "predict_url": predict,
        "try_url": url_for("api.predict", name=name, version=version["version"]),
        "feedback_url": url_for("api.prediction_feedback", prediction_id="PREDICTION_ID"),
        "curl": snippets.curl_predict(predict, inputs),
        "v2_url": v2,
        "curl_v2": snippets.curl_v2(v2, inputs, version["inputs"]),
        **code_snippets(name, pinned, inputs, version["inputs"]),
    }


def code_snippets(name: str, pinned: str | None, inputs: dict, schema: dict) -> dict:
    """Python (`requests`, `tritonclient.http`) and `aid predict` calls, beside the curl ones."""
    hub_url = url_for("pages.catalog", _external=True)
    predict = url_for("api.predict", name=name, version=pinned, _external=True)
    return {
        "python": snippets.python_requests(predict, inputs),
        "triton": snippets.python_triton(hub_url, name, pinned, inputs, schema),
        "aid": snippets.aid_predict(hub_url, f"{name}@{pinned}" if pinned else name, inputs),
    }


@blueprint.get("/models/<path:name>/drift/<id:run_id>/report")
@needs("read")
def drift_report(name, run_id):
    response = Response(get_hub().drift_report(name, run_id), content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


# --- leaderboards -------------------------------------------------------------------------


@blueprint.get("/tasks/<task>")
@needs("read")
def leaderboard(task):
    return render_template("leaderboard.html", board=get_hub().leaderboard(task))


# --- builds -------------------------------------------------------------------------------


@blueprint.get("/builds/<id:build_id>")
@needs("read")
def build(build_id):
    row = get_hub().build(build_id)
    running = row["status"] in IN_FLIGHT
    page = {"build": row, "running": running, "in_flight": sorted(IN_FLIGHT)}
    return render_template("build.html", **page, may_cancel=may_change(row["model"]))


@blueprint.post("/builds/<id:build_id>/cancel")
@needs("deploy")
def cancel_build(build_id):
    owner_only(get_hub().build(build_id)["model"])
    get_hub().cancel_build(build_id)
    return redirect(url_for("pages.build", build_id=build_id), code=303)


# --- formatting for the templates -------------------------------------------------------------


@blueprint.app_template_filter("percent")
def percent(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@blueprint.app_template_filter("ms")
def milliseconds(value) -> str:
    return "—" if value is None else f"{value:g} ms"


@blueprint.app_template_filter("when")
def when(value) -> str:
    """'2024-05-01T12:03:09Z' -> '2024-05-01 12:03 UTC'."""
    return "—" if not value else f"{value[:10]} {value[11:16]} UTC"


@blueprint.app_template_filter("shape")
def shape(dims) -> str:
    """[-1, 4] -> 'shape n × 4'; [] -> 'scalar'."""
    return "shape " + " × ".join("n" if d in (-1, None) else str(d) for d in dims) if dims else "scalar"
