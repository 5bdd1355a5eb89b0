"""The review queue (hub/review.py): its JSON API under /api/v1 and its page, one item at a time,
where a reviewer picks the right label with one click (or the key of its number; s skips). Without
JavaScript every button is a plain form with the session's CSRF token. Listing needs `read`;
labelling and skipping `feedback`, as feedback does; changing the rules `deploy` and the model's
owner."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for

from hub.errors import HubError, Invalid
from vocab.names import split_ref
from web.auth import needs, owner_only, principal
from web.context import client, get_hub
from web.reviewview import shown_inputs

blueprint = Blueprint("review", __name__)
API = "/api/v1/models/<path:name>/review"


@blueprint.get(API)
@needs("read")
def queue(name):
    return jsonify(get_hub().review_queue(split_ref(name)[0], request.args.get("limit", 50)))


@blueprint.get(API + "/<id:item_id>")
@needs("read")
def item(name, item_id):
    return jsonify(get_hub().review_item(split_ref(name)[0], item_id))


@blueprint.post(API + "/<id:item_id>")
@needs("feedback")
def answer(name, item_id):
    body = request.get_json(silent=True)
    return jsonify(get_hub().answer_review(split_ref(name)[0], item_id, body, client(), reviewer()))


@blueprint.put(API + "/rules")
@needs("deploy")
def rules(name):
    name = split_ref(name)[0]
    owner_only(name)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Invalid('The body must be a JSON object such as {"measure": "entropy", "threshold": 0.8}.')
    return jsonify(get_hub().set_review_rules(name, body))


def reviewer() -> str:
    """Who labelled: the signed-in owner, else how the hub knows the caller (an address)."""
    caller = principal()
    return caller.owner or f"anonymous ({client()})"


# --- the page -------------------------------------------------------------------------------


@blueprint.get("/models/<path:name>/review")
@needs("read")
def page(name):
    return render_template("review.html", **review_page(name, request.args.get("item")))


@blueprint.post("/models/<path:name>/review/<id:item_id>")
@needs("feedback")
def answer_form(name, item_id):
    form = request.form
    body = {"skip": True} if form.get("skip") else {"label": form.get("label", "")}
    try:
        done = get_hub().answer_review(name, item_id, body, client(), reviewer())
    except HubError as e:
        if e.status >= 500:
            raise
        page = review_page(name, str(item_id), error=e.message)
        return render_template("review.html", **page), e.status
    said = "skipped" if done["feedback"] is None else done["feedback"]["label"]
    return redirect(url_for("review.page", name=name, done=item_id, said=said), code=303)


def review_page(name: str, chosen: str | None, error: str = "") -> dict:
    """The page's data: the item asked for (else the most doubtful waiting one), its input as shown,
    and the labels as buttons with their keys."""
    hub = get_hub()
    queue = hub.review_queue(name, 1)
    current = queue["items"][0] if queue["items"] else None
    if chosen and chosen.isdigit():
        current = hub.review_item(name, int(chosen))
    labels = queue["labels"]
    return {
        "model": name, "queue": queue, "item": current, "error": error, "may_label": _may_label(),
        "inputs": shown_inputs(current["inputs"], _schema(name, current)) if current else [],
        "buttons": [{"label": label, "key": str(i) if i <= 9 else ""} for i, label in enumerate(labels, 1)],
        "done": request.args.get("done"), "said": request.args.get("said"),
    }  # fmt: skip


def _schema(name: str, current: dict) -> dict:
    try:
        return get_hub().version(name, current["version"])["inputs"]
    except HubError:  # the version was deleted since: show the values as they are
        return {key: {} for key in current.get("inputs") or {}}


def _may_label() -> bool:
    try:
        get_hub().require(principal(), "feedback")
    except HubError:
        return False
    return True
