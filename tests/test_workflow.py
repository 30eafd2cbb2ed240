"""The GitHub Pages workflow and CITATION.cff, checked offline.

The workflow is validated against SchemaStore's GitHub-workflow schema shipped in tests/data/ (see
its README), so a typo in a key fails here rather than on GitHub.
"""
import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import stflib

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "data" / "github-workflow.schema.json"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _validator():
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


def _load(path: Path) -> dict:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as the string "on"
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def test_shipped_schema_is_the_documented_copy():
    readme = (REPO / "tests" / "data" / "README.md").read_text()
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest in readme, "tests/data/README.md must record the schema's sha256"
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA.read_text()))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_match_the_github_schema(path):
    errors = sorted(_validator().iter_errors(_load(path)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_catches_a_broken_workflow():
    broken = _load(REPO / ".github" / "workflows" / "book.yml")
    broken["jobs"]["build"]["runs-on"] = None
    broken["jobs"]["build"]["steps"][0] = {"uses": "actions/checkout@v4", "whith": {}}
    assert list(_validator().iter_errors(broken))


def test_book_workflow_builds_from_committed_results_and_deploys_to_pages():
    workflow = _load(REPO / ".github" / "workflows" / "book.yml")
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    runs = [s.get("run", "") for s in build["steps"]]
    uses = [s.get("uses", "").split("@")[0] for s in build["steps"]]
    assert "make book" in runs
    assert not any("ablate" in r for r in runs)  # the book reads the committed results, never re-runs the grid
    assert "actions/upload-pages-artifact" in uses
    artifact = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert artifact["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_citation_file_names_the_current_version():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors", "version"} <= set(cff)
    assert cff["version"] == stflib.__version__, "CITATION.cff's version must follow stflib.__version__"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", cff["version"])
