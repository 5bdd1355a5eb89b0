"""`aid publish` with lineage fields against a real hub (`aid serve` in a subprocess): a parent or a
snapshot the hub does not hold is exit 2 naming it; a good lineage shows in `aid show NAME@VERSION`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.hubserver import AID, HubProcess
from tests.packages import python_package


def aid(hub: HubProcess, *args: str) -> subprocess.CompletedProcess:
    command = [AID, "--hub", hub.url, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=hub.env)


def with_fields(root: Path, **fields) -> Path:
    manifest = yaml.safe_load((root / "aid.yaml").read_text())
    (root / "aid.yaml").write_text(yaml.safe_dump({**manifest, **fields}))
    return root


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = HubProcess(tmp_path_factory.mktemp("lineage") / "home").start()
    yield hub
    hub.stop()


def test_publish_with_lineage_and_show_it(hub, tmp_path):
    assert aid(hub, "publish", str(python_package(tmp_path / "v1", "lin-model"))).returncode == 0
    exported = aid(hub, "dataset", "export", "lin-model", "--format", "csv", "-o", str(tmp_path / "d.csv"))
    assert exported.returncode == 0, exported.stderr
    digest = json.loads(aid(hub, "dataset", "list", "lin-model", "--json").stdout)["datasets"][0]["digest"]
    root = with_fields(
        python_package(tmp_path / "v2", "lin-model", "1.1.0"), parent="1.0.0", trained_on=digest
    )
    done = aid(hub, "publish", str(root))
    assert done.returncode == 0, done.stderr
    shown = json.loads(aid(hub, "show", "lin-model@1.1.0", "--json").stdout)
    assert (shown["parent"], shown["trained_on"][0]["digest"], shown["trained_on"][0]["rows"]) == (
        "1.0.0",
        digest,
        0,
    )
    assert json.loads(aid(hub, "show", "lin-model@1.0.0", "--json").stdout)["children"] == ["1.1.0"]


def test_an_unknown_parent_or_snapshot_is_exit_2_naming_it(hub, tmp_path):
    root = with_fields(
        python_package(tmp_path / "bad", "lone-model", "2.0.0"), parent="1.0.0", trained_on="sha256:0badc0de"
    )
    done = aid(hub, "publish", str(root))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(
        "Error: aid.yaml names what the hub does not hold: parent: '1.0.0' is not a published version "
        "of 'lone-model'. 'lone-model' has no version yet."
    )
    assert "  - trained_on[0]: 'sha256:0badc0de' names no dataset snapshot of yours" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_lineage_format_is_exit_2_before_anything_is_sent(hub, tmp_path):
    root = with_fields(python_package(tmp_path / "self", "self-model", "1.0.0"), parent="1.0.0")
    done = aid(hub, "publish", str(root))
    assert done.returncode == 2, done.stderr
    assert "parent: '1.0.0' is this version itself; name the version it was retrained from" in done.stderr
