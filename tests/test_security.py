"""Hostile and careless input: nothing leaks into the logs, everything gets its documented 4xx.

(Constant-time comparison of the secret is tested in test_api_score.py.)
"""
from __future__ import annotations

import io
import json
import logging

import pytest

from llm.errors import BackendUnavailable, UpstreamError
from server import create_app
from tests.conftest import NEURONPEDIA_EXAMPLE, make_settings
from tests.test_api_score import FakeRuntime, FakeSimulator, assert_error, strict_json
from web import observability

SECRET = "s3cret-server-key-0451"
API_KEY = "sk-live-api-key-7788-do-not-log"


@pytest.fixture
def logs(caplog):
    """Everything logged, at every level: through caplog, our JSON formatter and our text formatter."""
    caplog.set_level(logging.DEBUG)
    json_stream, text_stream = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(json_stream), logging.StreamHandler(text_stream)]
    handlers[0].setFormatter(observability.JsonFormatter())
    handlers[1].setFormatter(observability.TextFormatter())
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)

    def everything() -> str:
        return "\n".join([caplog.text, json_stream.getvalue(), text_stream.getvalue()])

    everything.json_lines = lambda: [json.loads(l) for l in json_stream.getvalue().splitlines()]  # type: ignore[attr-defined]
    yield everything
    for handler in handlers:
        root.removeHandler(handler)


def locked_client(simulator=None, **overrides):
    settings = dict(server_key=SECRET, openai_api_key=API_KEY, **overrides)
    runtime = FakeRuntime(simulator or FakeSimulator(), **settings)
    return create_app(make_settings(**settings), runtime).test_client()


def body(**changes) -> dict:
    return {**NEURONPEDIA_EXAMPLE, **changes}


# -- no secret in the logs ------------------------------------------------------------


def test_no_secret_or_api_key_in_the_logs_on_any_path(logs):
    ok = locked_client(rate_limit="100/minute")
    assert ok.post("/score", json=body(secret=SECRET)).status_code == 200
    assert ok.post("/score", json=body(), headers={"X-Secret-Key": SECRET}).status_code == 200
    assert ok.post("/score", json=body(), headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    assert ok.post("/score", json=body(secret=SECRET + "-wrong")).status_code == 401
    assert ok.post("/score", json=body(secret=API_KEY)).status_code == 401
    assert ok.post("/score", json=body(secret=SECRET, explanation=" ")).status_code == 400
    assert ok.post("/score", data=b'{"secret": "%s", ' % SECRET.encode(), content_type="application/json").status_code == 400
    assert ok.post("/score", data=json.dumps(body(secret=SECRET)), content_type="text/plain").status_code == 415
    assert ok.get("/score", headers={"X-Secret-Key": SECRET}).status_code == 405
    assert ok.get(f"/{SECRET}", headers={"X-Secret-Key": SECRET}).status_code == 404
    assert ok.get("/health", headers={"X-Request-ID": SECRET}).status_code == 200
    assert ok.get("/metrics", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200

    limited = locked_client(rate_limit="1/minute")
    limited.post("/score", json=body(secret=SECRET))
    assert limited.post("/score", json=body(secret=SECRET)).status_code == 429

    text = logs()
    assert "POST /score 200" in text and "/score 429" in text  # the paths were logged...
    assert SECRET not in text and API_KEY not in text  # ...without the secrets


@pytest.mark.parametrize(
    "exc,status",
    [
        (UpstreamError(f"401 from the backend: Incorrect API key provided: {API_KEY}"), 502),
        (BackendUnavailable(f"cannot reach http://user:{API_KEY}@llm.internal/v1"), 503),
        (RuntimeError(f"bug while holding {SECRET} and {API_KEY}"), 500),
    ],
)
def test_backend_errors_that_quote_a_key_are_redacted_in_the_logs(logs, exc, status):
    client = locked_client(FakeSimulator(raise_exc=exc))
    response = client.post("/score", json=body(secret=SECRET))
    assert response.status_code == status
    text = logs()
    assert SECRET not in text and API_KEY not in text
    assert observability.REDACTED in text


def test_any_logger_is_redacted_at_the_source(logs):
    locked_client()  # registers the two values
    logging.getLogger("some.library").error("connecting with key=%s", API_KEY)
    logging.getLogger("some.library").warning(f"header was Bearer {SECRET}", stack_info=True)
    try:
        raise ValueError(f"cannot use {API_KEY}")
    except ValueError:
        logging.getLogger("some.library").exception("failed")
    text = logs()
    assert API_KEY not in text and SECRET not in text
    assert "connecting with key=[REDACTED]" in text
    lines = logs.json_lines()
    assert any("ValueError: cannot use [REDACTED]" in line.get("exc", "") for line in lines)


def test_redaction_reaches_the_fields_of_a_record():
    locked_client()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.fields = {"note": f"key {API_KEY}", "nested": [{"k": SECRET}]}
    line = observability.JsonFormatter().format(record)
    assert API_KEY not in line and SECRET not in line


def test_the_secret_is_not_echoed_in_any_error_body():
    client = locked_client()
    for response in (
        client.post("/score", json=body(secret=SECRET + "x")),
        client.post("/score", json=body(secret=SECRET, activations=[])),
        client.post("/score", data=b'{"secret": "%s"' % SECRET.encode(), content_type="application/json"),
    ):
        assert 400 <= response.status_code < 500
        assert SECRET not in response.get_data(as_text=True)


# -- oversized and deeply nested JSON ------------------------------------------------------


def post_raw(client, data: bytes, content_type="application/json", **kwargs):
    return client.post("/score", data=data, content_type=content_type, **kwargs)


def test_a_body_over_max_content_length_is_413(make_client):
    client = make_client(max_content_length=10_000)
    raw = json.dumps(body(explanation="x" * 20_000)).encode()
    assert_error(post_raw(client, raw), 413, "payload_too_large", "MAX_CONTENT_LENGTH")


def test_a_lying_content_length_is_413_before_reading(make_client):
    client = make_client(max_content_length=10_000)
    response = post_raw(client, b"{}", environ_overrides={"CONTENT_LENGTH": "999999999"})
    assert_error(response, 413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_413(make_client):
    # werkzeug's LimitedStream quietly cuts a body of unknown length at the limit;
    # the answer must still be 413, not 400 for the truncated JSON.
    client = make_client(max_content_length=10_000)
    raw = json.dumps(body(explanation="x" * 20_000)).encode()
    response = client.post(
        "/score",
        input_stream=io.BytesIO(raw),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("over", [0, 1, 2])
def test_a_chunked_body_is_judged_like_one_with_a_length(make_client, over):
    """Exactly MAX_CONTENT_LENGTH bytes pass, chunked or not; one byte more is 413 either way."""
    raw = json.dumps(body()).encode()
    client = make_client(max_content_length=len(raw) - over)
    chunked = client.post(
        "/score",
        input_stream=io.BytesIO(raw),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    with_length = client.post("/score", data=raw, content_type="application/json")
    assert chunked.status_code == with_length.status_code == (200 if over == 0 else 413)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"explanation": "x", "activations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"explanation": "x", "activations": [' + b"[" * 100_000,  # deep and unterminated
    ],
    ids=["arrays", "objects", "inside-a-field", "unterminated"],
)
def test_deeply_nested_json_is_400(client, raw):
    assert_error(post_raw(client, raw), 400, "invalid_request")


def test_moderate_nesting_where_a_string_belongs_names_the_field(client):
    raw = json.dumps(body(explanation="PLACEHOLDER")).encode().replace(b'"PLACEHOLDER"', b"[" * 500 + b"]" * 500)
    assert_error(post_raw(client, raw), 400, "invalid_request", "explanation")


def test_deep_nesting_in_an_ignored_field_is_harmless(client):
    raw = json.dumps(body()).encode().replace(b"{", b'{"dataclass_name": ' + b"[" * 500 + b"]" * 500 + b", ", 1)
    assert post_raw(client, raw).status_code == 200


def test_deep_nesting_with_a_rate_limit_and_a_key_is_still_400(make_client):
    client = make_client(server_key=SECRET, rate_limit="10/minute")
    raw = b'{"secret": "' + SECRET.encode() + b'", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(post_raw(client, raw), 400, "invalid_request")


# -- huge token strings (the real offline simulator) -------------------------------------


@pytest.mark.parametrize("token", ["a" * 1_000_000, "\u00e9" * 300_000, "fast " * 200_000], ids=["ascii", "latin", "words"])
def test_a_one_megabyte_token_is_answered_properly(client, token):
    payload = body(activations=[{"tokens": [token, " fox", " runs"], "values": [1.0, 2.0, 0.0]}])
    response = client.post("/score", json=payload)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    item = strict_json(response)["simulations"][0]
    assert item["simulation"]["tokens"][0] == token
    assert len(item["simulation"]["expected_activations"]) == 3


def test_a_one_megabyte_explanation_is_413_naming_it(client):
    assert_error(client.post("/score", json=body(explanation="x" * 1_000_000)), 413, "payload_too_large", "explanation")


def test_many_large_tokens_within_the_body_limit_are_answered(client):
    tokens = ["t" * 1000] * 1000  # ~1 MB over one text
    payload = body(activations=[{"tokens": tokens, "values": [float(i % 3) for i in range(1000)]}])
    assert client.post("/score", json=payload).status_code == 200


# -- encodings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"explanation": "caf\u00e9", "activations": []}'.encode("latin-1"),
        json.dumps(NEURONPEDIA_EXAMPLE).encode("utf-16"),
        json.dumps(NEURONPEDIA_EXAMPLE).encode("utf-32"),
        b'{"explanation": "\xc3\x28", "activations": []}',  # an invalid two-byte sequence
        b"\xed\xa0\x80",  # an encoded surrogate, which UTF-8 forbids
        b"\x00" * 64,
    ],
    ids=["latin-1", "utf-16", "utf-32", "bad-sequence", "surrogate-bytes", "nul-bytes"],
)
def test_a_body_that_is_not_utf8_is_400(client, raw):
    assert_error(post_raw(client, raw), 400, "invalid_request")


def test_a_charset_parameter_does_not_change_the_parsing(client):
    raw = json.dumps(NEURONPEDIA_EXAMPLE).encode("utf-8")
    assert post_raw(client, raw, "application/json; charset=utf-8").status_code == 200
    assert_error(
        post_raw(client, '{"explanation": "caf\u00e9"}'.encode("latin-1"), "application/json; charset=latin-1"),
        400,
        "invalid_request",
    )


def test_escaped_lone_surrogates_in_tokens_come_back_as_valid_json(client):
    raw = b'{"explanation": "x", "activations": [{"tokens": ["\\ud800", "b\\udfff"], "values": [1, 2]}]}'
    response = post_raw(client, raw)
    assert response.status_code == 200
    assert strict_json(response)["simulations"][0]["simulation"]["tokens"] == ["\ud800", "b\udfff"]


def test_a_lone_surrogate_secret_is_401_not_500():
    client = locked_client()
    raw = b'{"explanation": "x", "secret": "\\ud800", "activations": [{"tokens": ["a"], "values": [1]}]}'
    assert_error(post_raw(client, raw), 401, "unauthorized")


def test_non_ascii_secrets_in_headers_are_401_not_500():
    client = locked_client()
    response = client.post("/score", json=body(), headers={"X-Secret-Key": "cl\u00e9"})
    assert_error(response, 401, "unauthorized")


# -- content types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "application/octet-stream",
        "application/jsonp",
        "",
        None,
    ],
)
def test_a_body_that_is_not_declared_json_is_415(client, content_type):
    response = client.post("/score", data=json.dumps(NEURONPEDIA_EXAMPLE), content_type=content_type)
    assert_error(response, 415, "unsupported_media_type", "application/json")


def test_structured_json_media_types_are_json(client):
    response = post_raw(client, json.dumps(NEURONPEDIA_EXAMPLE).encode(), "application/vnd.api+json")
    assert response.status_code == 200


def test_a_form_post_with_a_secret_field_is_415_not_an_auth_bypass():
    client = locked_client()
    response = client.post("/score", data={"secret": SECRET, "explanation": "x"})
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("where", ["X-Secret-Key", "Authorization"])
def test_a_non_ascii_key_works_in_a_header_as_in_the_body(make_client, where):
    key = "clé-secrète-密钥"
    client = make_client(server_key=key)
    wire = key.encode("utf-8").decode("latin-1")  # how WSGI hands over the header's UTF-8 bytes
    value = wire if where == "X-Secret-Key" else f"Bearer {wire}"
    assert client.post("/score", json=body(), headers={where: value}).status_code == 200
    assert client.post("/score", json={**body(), "secret": key}).status_code == 200
    wrong = "clé-secrète-密X".encode("utf-8").decode("latin-1")
    refused = client.post("/score", json=body(), headers={where: wrong if where == "X-Secret-Key" else f"Bearer {wrong}"})
    assert refused.status_code == 401


def test_a_number_of_thousands_of_digits_is_a_plain_400(client):
    raw = b'{"explanation": "x", "activations": [{"tokens": ["a"], "values": [' + b"1" * 5000 + b"]}]}"
    response = post_raw(client, raw)
    assert_error(response, 400, "invalid_request")
    assert "more digits than the service reads" in response.get_json()["error"]
    assert "sys." not in response.get_json()["error"]  # no advice meant for the server's own code
