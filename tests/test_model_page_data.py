"""The model page as data (issue 11, item 2): one dict served as HTML and as JSON (`Accept:
application/json` or NAME.json), its copyable snippets (curl, Python `requests`, `tritonclient.http`,
`aid predict`) and the version's build history with the latest build's log inline.

On a real Hub per test (SQLite file, then PostgreSQL) through the Flask test client (conftest.py:
client, publish); nothing is deployed, builds are rows no worker touches (demo_build).
"""

from __future__ import annotations

import ast
import json
import shlex

from tests.demo_package import demo_build
from tests.page_reading import Elements, get, text_of
from vocab.names import MODEL_NAME_RE
from vocab.states import BuildStatus
from web import snippets

JSON = {"Accept": "application/json"}
SAMPLE = {"x": [[1.0, 2.0]]}  # the demo package's first example


def page_json(client, url: str, status: int = 200, **headers) -> dict:
    reply = client.get(url, headers=headers)
    assert reply.status_code == status, reply.get_data(as_text=True)[:2000]
    assert reply.mimetype == "application/json"
    return reply.get_json()


# --- one dict, two formats ----------------------------------------------------------------------


def test_model_page_is_json_by_accept_header_and_by_dot_json_with_the_same_data(client, publish):
    publish()
    publish(version="1.1.0")
    by_accept = page_json(client, "/models/demo-adder", **JSON)
    assert page_json(client, "/models/demo-adder.json") == by_accept
    assert by_accept["model"]["name"] == "demo-adder" and by_accept["version"]["version"] == "1.1.0"
    versions = by_accept["model"]["versions"]
    assert [v["version"] for v in versions] == ["1.1.0", "1.0.0"]
    assert all(len(v["digest"]) >= 64 and v["size"] > 0 and v["created_at"] for v in versions)
    assert by_accept["model"]["aliases"] == {"latest": "1.1.0"}
    assert by_accept["version"]["deployment"]["status"] == "not deployed"
    assert {"traffic", "latency", "accuracy"} <= set(by_accept["charts"])
    assert "form" not in by_accept and "feedback_error" not in by_accept
    html = client.get("/models/demo-adder")
    assert html.mimetype == "text/html" and "Accept" in html.headers["Vary"]
    assert 'href="/models/demo-adder.json"' in html.get_data(as_text=True)


def test_json_card_is_the_sanitised_html_and_a_version_query_is_kept(client, publish):
    publish()
    publish(version="1.1.0")
    data = page_json(client, "/models/demo-adder.json?version=1.0.0")
    assert data["version"]["version"] == "1.0.0" and data["ref"] == "1.0.0"
    assert "Adds one to every value." in data["card"]
    card = Elements(data["card"])
    assert not card.find("script") and all("onerror" not in e for _, e in card.tags)
    assert [a["href"] for a in card.find("a")] == ["https://example.org/docs"]  # javascript: dropped


def test_browser_and_curl_accept_headers_get_html(client, publish):
    publish()
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    for accept in (browser, "*/*"):
        reply = client.get("/models/demo-adder", headers={"Accept": accept})
        assert reply.status_code == 200 and reply.mimetype == "text/html", accept
        assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
    catalog = client.get("/", headers=JSON)  # a page with no JSON form is still a page, with its CSP
    assert catalog.mimetype == "text/html" and "Content-Security-Policy" in catalog.headers


def test_names_never_end_in_json_so_the_suffix_is_the_format_and_unknowns_are_json_404s(client, publish):
    # The edge case `x.json` as a model name: names have no dots (vocab/names.py), so it cannot exist.
    assert MODEL_NAME_RE.fullmatch("x.json") is None and MODEL_NAME_RE.fullmatch("team/x") is not None
    publish(name="team/adder")
    assert page_json(client, "/models/team/adder.json")["model"]["name"] == "team/adder"
    missing = page_json(client, "/models/team/adder.json.json", status=404)
    assert "team/adder.json" in missing["error"]
    assert "nothing-here" in page_json(client, "/models/nothing-here", status=404, **JSON)["error"]
    assert client.get("/models/nothing-here").mimetype == "text/html"


def test_a_bad_window_is_a_400_in_json_too(client, publish):
    publish()
    data = page_json(client, "/models/demo-adder.json?window=fortnight", status=400)
    assert data["window"] == "24h" and "fortnight" in data["window_error"]


# --- snippets -----------------------------------------------------------------------------------


def call_args(source: str, function: str) -> ast.Call:
    """The first call of `function` (a name or attribute) in `source`, which must compile."""
    compile(source, "<snippet>", "exec")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called == function:
                return node
    raise AssertionError(f"no call of {function} in:\n{source}")


def test_requests_snippet_is_python_posting_the_example_to_the_predict_url(client, publish):
    publish()
    api = page_json(client, "/models/demo-adder.json")["api"]
    call = call_args(api["python"], "post")
    assert ast.literal_eval(call.args[0]) == "http://localhost/api/v1/models/demo-adder/predict"
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert keywords["json"] == {"inputs": SAMPLE} and keywords["timeout"] > 0
    pinned = page_json(client, "/models/demo-adder.json?version=1.0.0")["api"]["python"]
    assert "/api/v1/models/demo-adder@1.0.0/predict" in pinned or "version=1.0.0" in pinned


def test_tritonclient_snippet_calls_the_hubs_v2_routes_with_the_model_and_a_typed_tensor(client, publish):
    publish()
    triton = page_json(client, "/models/demo-adder.json")["api"]["triton"]
    assert ast.literal_eval(call_args(triton, "InferenceServerClient").args[0]) == "localhost"
    tensor = call_args(triton, "InferInput")
    assert ast.literal_eval(tensor.args[0]) == "x" and ast.literal_eval(tensor.args[2]) == "FP32"
    array = call_args(triton, "array")
    assert (
        ast.literal_eval(array.args[0]) == SAMPLE["x"]
        and ast.unparse(array.keywords[0].value) == "np.float32"
    )
    infer = call_args(triton, "infer")
    assert ast.literal_eval(infer.args[0]) == "demo-adder" and not infer.keywords
    pinned = page_json(client, "/models/demo-adder.json?version=1.0.0")["api"]["triton"]
    assert {k.arg: ast.literal_eval(k.value) for k in call_args(pinned, "infer").keywords} == {
        "model_version": "1.0.0"
    }


def test_python_snippets_keep_hostile_names_and_values_as_literals():
    name = "x'); import os; os.system('boom') #\n"
    schema = {name: {"dtype": "string", "shape": [-1]}}
    inputs = {name: ["\"'; rm -rf /"]}
    triton = snippets.python_triton("https://hub.example.org/prefix/", "m", None, inputs, schema)
    assert ast.literal_eval(call_args(triton, "InferInput").args[0]) == name
    assert ast.literal_eval(call_args(triton, "array").args[0]) == inputs[name]
    client = call_args(triton, "InferenceServerClient")
    assert ast.literal_eval(client.args[0]) == "hub.example.org/prefix"
    assert ast.literal_eval(client.keywords[0].value) is True  # ssl for https
    requests = call_args(snippets.python_requests("http://h/p", inputs), "post")
    assert ast.literal_eval(requests.keywords[0].value) == {"inputs": inputs}
    assert "os.system" not in ast.dump(ast.parse(triton)).replace(repr(name), "")


def test_aid_predict_snippet_is_one_shell_command_with_the_example(client, publish):
    publish()
    api = page_json(client, "/models/demo-adder.json?version=1.0.0")["api"]
    words = shlex.split(api["aid"].replace("\\\n", " "))
    assert words[:5] == ["aid", "--hub", "http://localhost", "predict", "demo-adder@1.0.0"]
    assert words[5] == "--inputs" and json.loads(words[6]) == SAMPLE and len(words) == 7
    assert shlex.split(page_json(client, "/models/demo-adder.json")["api"]["aid"])[4] == "demo-adder"


def test_every_snippet_has_a_copy_button_hidden_until_javascript_shows_it(client, publish):
    publish()
    page = get(client, "/models/demo-adder")
    elements = Elements(page)
    buttons = {b["data-copy"]: b for b in elements.find("button") if "data-copy" in b}
    snippet_ids = {"curl-predict", "curl-v2", "python-requests", "python-triton", "aid-predict"}
    assert snippet_ids <= set(buttons)
    assert all("hidden" in buttons[i] and elements.find("pre", id=i) for i in snippet_ids)
    text = text_of(page)
    assert "import tritonclient.http as httpclient" in text and "aid --hub http://localhost predict" in text


# --- build history ------------------------------------------------------------------------------


def test_model_page_lists_the_builds_newest_first_with_the_latest_log_inline(client, publish):
    publish()
    first = demo_build(BuildStatus.FAILED, "step one\nit broke\n")
    log = "".join(f"line {n}\n" for n in range(200))
    latest = demo_build(BuildStatus.SUCCEEDED, log)
    data = page_json(client, "/models/demo-adder.json")
    assert [(b["id"], b["status"]) for b in data["builds"]] == [(latest, "succeeded"), (first, "failed")]
    assert all("log" not in b for b in data["builds"])
    assert data["build"]["id"] == latest and data["build"]["log_cut"] and not data["build_following"]
    assert data["build"]["log_tail"].splitlines() == [f"line {n}" for n in range(120, 200)]
    page = get(client, "/models/demo-adder")
    elements = Elements(page)
    details = elements.find("details", id="latest-build")
    assert details and "open" not in details[0] and "data-build-poll" not in details[0]
    inline = page.split('id="latest-build-log">')[1].split("</pre>")[0]
    assert inline.startswith("line 120\n") and "line 199" in inline and "line 119\n" not in inline
    text = text_of(page)
    assert f"Builds of 1.0.0 Build Status Took Queued {latest} succeeded" in text
    assert f"Log of build {latest} (its end)" in text


def test_a_running_build_is_followed_live_and_a_failed_one_shows_its_log_open(client, publish):
    publish()
    demo_build(BuildStatus.FAILED, "it broke\n")
    failed = Elements(get(client, "/models/demo-adder")).find("details", id="latest-build")[0]
    assert "open" in failed and "data-build-poll" not in failed
    running = demo_build(BuildStatus.RUNNING, "installing\n")
    details = Elements(get(client, "/models/demo-adder")).find("details", id="latest-build")[0]
    assert details["data-build-poll"] == f"/api/v1/builds/{running}" and "open" in details
    assert set(json.loads(details["data-build-in-flight"])) == {"queued", "running", "cancelling"}
    assert page_json(client, "/models/demo-adder.json")["build_following"] is True
    followed = client.get(details["data-build-poll"]).get_json()
    assert followed["status"] == "running" and followed["log"] == "installing\n"


def test_a_version_never_built_says_how_to_build_it(client, publish):
    publish()
    data = page_json(client, "/models/demo-adder.json")
    assert data["builds"] == [] and data["build"] is None
    assert "No build yet: aid deploy demo-adder@1.0.0 builds and starts it." in text_of(
        get(client, "/models/demo-adder")
    )


def test_model_page_says_when_a_version_batches_calls(client, publish):
    publish()
    publish(version="1.1.0", batching={"max_batch_size": 8, "max_latency_ms": 4})
    batched = text_of(get(client, "/models/demo-adder"))
    assert "onnx · not deployed · batches calls: up to 8 rows, waiting at most 4 ms" in batched
    alone = text_of(get(client, "/models/demo-adder?version=1.0.0"))
    assert "onnx · not deployed" in alone and "batches calls" not in alone
