"""Property-based requests generated from the app's own OpenAPI schema (schemathesis): no
request, well-formed or not, may get a 5xx answer, and every error has the error body."""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error


def _operations() -> list[tuple[str, str]]:
    from speakerdb.server import create_app

    spec = create_app(None).openapi()  # the schema does not depend on the database
    return [(path, method.upper()) for path, item in spec["paths"].items() for method in item]


OPERATIONS = _operations()


@pytest.fixture(scope="module")
def api_schema(base_home, tmp_path_factory):
    from speakerdb.api import SpeakerDB
    from speakerdb.server import create_app

    home = tmp_path_factory.mktemp("schema") / "home"
    shutil.copytree(base_home, home)
    db = SpeakerDB.open(home)
    app = create_app(db, max_upload_bytes=200_000)  # no token: the writes run for real
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    db.close()


def test_every_endpoint_is_in_the_schema():
    assert set(OPERATIONS) == {
        ("/health", "GET"), ("/stats", "GET"), ("/identify", "POST"), ("/verify", "POST"),
        ("/embed", "POST"), ("/diarize", "POST"), ("/speakers", "GET"),
        ("/speakers/{label}/enroll", "POST"),
        ("/speakers/{label}", "PATCH"), ("/speakers/{label}", "DELETE"),
        ("/speakers/{label}/merge", "POST"), ("/recordings/{key}", "DELETE")}


@pytest.mark.parametrize("path,method", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_request_gets_a_server_error(api_schema, path, method):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call()
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and {"type", "message"} <= set(body["error"]), body

    run()
