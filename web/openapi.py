"""The OpenAPI 3.1 document of /api/v1 and /v2: paths from the app's url_map, each described by
web/openapi_operations.py, with the schemas of web/openapi_schemas.py.

A route that is registered but not described still appears in the document, marked
`x-undocumented`, and tests/test_api_contract.py fails until it is described.
"""

from __future__ import annotations

import re

from flask import Flask

from web.auth import NEEDS
from web.openapi_operations import error_reply, operations
from web.openapi_schemas import components, typed

__all__ = ["PREFIXES", "document", "openapi_path", "operations"]

PREFIXES = ("/api/v1", "/v2")
SECURITY = {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token, aid_..."}}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
CONVERTER_TYPES = {"int": "integer", "id": "integer", "float": "number"}
PATH_PARAMETERS = {
    "name": "Model name (may contain '/'). Where the operation takes `?version=`, `name@ref` works too.",
    "ref": "A version number such as 1.0.0, or an alias such as production.",
    "alias": "Alias name: lower-case letters, digits and '-'; 'latest' is kept by the hub.",
    "build_id": "Build id, as returned by deploy.",
    "prediction_id": "The `id` of a predict reply (also its X-Prediction-Id header).",
    "version": "A version number or an alias.",
    "task": "A task such as text-classification (normalised like the manifest's task).",
}


def openapi_path(rule: str) -> str:
    """'/models/<path:name>/versions/<ref>' -> '/models/{name}/versions/{ref}'."""
    return RULE_ARGUMENT.sub(r"{\2}", rule)


def path_parameters(rule: str) -> list[dict]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS.get(name, name),
            "schema": typed(CONVERTER_TYPES.get(converter, "string")),
        }
        for converter, name in RULE_ARGUMENT.findall(rule)
    ]


def routed(app: Flask) -> dict[tuple[str, str], str]:
    """(OpenAPI path, method) -> Flask rule, for every route under PREFIXES."""
    return {key: rule.rule for key, rule in routed_rules(app).items()}


def routed_rules(app: Flask) -> dict:
    """(OpenAPI path, method) -> the werkzeug Rule, for every route under PREFIXES."""
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.rule == "/v2" or rule.rule.startswith(tuple(p + "/" for p in PREFIXES)):
            for method in sorted(rule.methods - IGNORED_METHODS):
                found[(openapi_path(rule.rule), method)] = rule
    return found


def with_scope(operation: dict, scope: str | None) -> dict:
    """The operation with the scope its route needs (web/auth.py), and the 401 / 403 it may answer."""
    if not scope:
        return {**operation, "security": []}
    text = f"Needs a token with the `{scope}` scope, unless AIDHUB_ANONYMOUS gives it to everyone."
    responses = {**operation["responses"], "401": error_reply(401), "403": error_reply(403)}
    description = (operation.get("description", "") + " " + text).strip()
    return {**operation, "x-scope": scope, "description": description, "responses": responses,
            "security": [{"bearer": []}]}  # fmt: skip


def undocumented(summary: str) -> dict:
    return {"summary": summary, "x-undocumented": True, "responses": {"500": error_reply(500)}}


def document(app: Flask) -> dict:
    described = operations()
    paths: dict[str, dict] = {}
    for (path, method), rule in sorted(routed_rules(app).items()):
        operation = described.get((path, method)) or undocumented(f"{method} {rule.rule}")
        operation = with_scope(operation, getattr(app.view_functions[rule.endpoint], NEEDS, None))
        params = path_parameters(rule.rule) + operation.get("parameters", [])
        paths.setdefault(path, {})[method.lower()] = {**operation, "parameters": params}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aidhub",
            "version": "1",
            "description": "Model hub JSON API and Open "
            "Inference Protocol v2. Every error replies with the Error schema.",
        },
        "paths": paths,
        "components": {**components(), "securitySchemes": SECURITY},
    }
