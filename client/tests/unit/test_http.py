"""The HTTP layer: endpoint handling, error lines, paging."""

import pytest
from keystoneauth1 import adapter as ksa_adapter
from keystoneauth1 import session as ksa_session

from frescoclient import exceptions
from frescoclient.v1.client import Client

from .conftest import API, ENDPOINT, REQ_ID, error_body


def _client(endpoint):
    return Client(adapter=ksa_adapter.Adapter(session=ksa_session.Session(),
                                              service_type="function",
                                              endpoint_override=endpoint))


@pytest.mark.parametrize("endpoint", [ENDPOINT, ENDPOINT + "/", ENDPOINT + "/v1", ENDPOINT + "/v1/"])
def test_endpoint_with_or_without_version(requests_mock, endpoint):
    requests_mock.get(API + "/agents", json={"agents": [{"id": "a1"}]})
    assert _client(endpoint).agents.list() == [{"id": "a1"}]
    assert requests_mock.last_request.url == API + "/agents"


def test_error_is_one_line_with_request_id(requests_mock, fresco):
    requests_mock.get(API + "/functions/nope", **error_body(404, "function 'nope' could not be found"))
    with pytest.raises(exceptions.NotFound) as info:
        fresco.functions.get("nope")
    text = str(info.value)
    assert text == "function 'nope' could not be found (HTTP 404) (Request-ID: %s)" % REQ_ID
    assert "\n" not in text
    assert info.value.request_id == REQ_ID


def test_error_without_json_body_and_retry_after(requests_mock, fresco):
    requests_mock.post(API + "/functions/f/invoke", status_code=429, text="slow\ndown",
                       headers={"Retry-After": "3"})
    with pytest.raises(exceptions.TooManyRequests) as info:
        fresco.functions.invoke("f")
    assert str(info.value) == "slow down (HTTP 429) (retry after 3s)"


def test_unknown_status_maps_to_base_error(requests_mock, fresco):
    requests_mock.get(API + "/agents", **error_body(418, "teapot"))
    with pytest.raises(exceptions.HttpError) as info:
        fresco.agents.list()
    assert type(info.value) is exceptions.HttpError
    assert info.value.status_code == 418


def test_connection_failure_is_one_line(fresco):
    client = _client("http://127.0.0.1:9")
    with pytest.raises(exceptions.ConnectionError, match="cannot reach fresco at http://127.0.0.1:9/v1/agents"):
        client.agents.list()


def test_paging_follows_absolute_and_relative_next_links(requests_mock, fresco):
    requests_mock.get(API + "/functions", [
        {"json": {"functions": [{"id": "1"}, {"id": "2"}], "next": API + "/functions?marker=2"}},
    ])
    requests_mock.get(API + "/functions?marker=2", json={
        "functions": [{"id": "3"}], "next": "/v1/functions?marker=3"})
    requests_mock.get(API + "/functions?marker=3", json={"functions": [{"id": "4"}]})
    assert [f["id"] for f in fresco.functions.list()] == ["1", "2", "3", "4"]
    assert requests_mock.call_count == 3


def test_limit_stops_paging_and_truncates(requests_mock, fresco):
    requests_mock.get(API + "/functions", json={
        "functions": [{"id": "1"}, {"id": "2"}], "next": API + "/functions?marker=2&limit=2"})
    requests_mock.get(API + "/functions?marker=2", json={
        "functions": [{"id": "3"}, {"id": "4"}], "next": API + "/functions?marker=4&limit=2"})
    items = fresco.functions.list(limit=3, marker="0", all_projects=True)
    assert [f["id"] for f in items] == ["1", "2", "3"]
    first = requests_mock.request_history[0]
    assert first.qs == {"limit": ["3"], "marker": ["0"], "all_projects": ["true"]}
    assert requests_mock.call_count == 2


def test_limit_above_api_maximum_is_capped_per_page(requests_mock, fresco):
    requests_mock.get(API + "/executions", json={"executions": []})
    fresco.executions.list(limit=5000)
    assert requests_mock.last_request.qs["limit"] == ["1000"]


def test_repeated_next_link_is_an_error(requests_mock, fresco):
    requests_mock.get(API + "/runtimes", json={"runtimes": [{"id": "1"}], "next": API + "/runtimes?marker=1"})
    with pytest.raises(exceptions.ClientException, match="same next link twice"):
        fresco.runtimes.list()


def test_missing_endpoint_is_reported(requests_mock):
    client = Client(adapter=ksa_adapter.Adapter(session=ksa_session.Session(), service_type="function"))
    with pytest.raises(exceptions.ClientException):
        client.agents.list()
