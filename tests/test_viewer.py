"""The viewer's routes through the Flask test client: the page and its headers, the examples."""
from __future__ import annotations

import json

import pytest

from tests.conftest import SHARED_DATA


def strict_json(response):
    def reject(name):
        raise AssertionError(f"non-finite constant {name} in body")

    return json.loads(response.get_data(as_text=True), parse_constant=reject)


def assert_security_headers(response):
    csp = response.headers["Content-Security-Policy"]
    directives = {d.strip().split()[0]: d.strip().split()[1:] for d in csp.split(";")}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_is_html_with_a_strict_content_security_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert_security_headers(response)
    page = response.get_data(as_text=True)
    assert 'id="score"' in page and 'src="/viewer/js/main.js"' in page
    # Every script is a file of the service: no inline script, no inline handler.
    assert "<script>" not in page and "onclick" not in page and "onerror" not in page


@pytest.mark.parametrize(
    "path, mimetype",
    [("/viewer/js/main.js", "text/javascript"), ("/viewer/viewer.css", "text/css")],
)
def test_assets_carry_the_same_headers(client, path, mimetype):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert_security_headers(response)


def test_examples_list_ids_titles_and_text_counts(client):
    response = client.get("/examples")
    assert response.status_code == 200
    listing = strict_json(response)
    assert len(listing) >= 5
    for entry in listing:
        assert isinstance(entry["id"], str) and isinstance(entry["title"], str)
        assert isinstance(entry["texts"], int) and entry["texts"] > 0
    ids = [entry["id"] for entry in listing]
    assert len(set(ids)) == len(ids)
    assert any(i.startswith("puzzle-") for i in ids) and any(i.startswith("gpt2-small-") for i in ids)


def test_every_example_is_ready_for_score(client):
    for entry in strict_json(client.get("/examples")):
        body = strict_json(client.get(f"/examples/{entry['id']}"))
        assert len(body["activations"]) == entry["texts"]
        assert 5 <= entry["texts"] <= 20
        for text in body["activations"]:
            assert len(text["tokens"]) == len(text["values"]) <= 64
        assert len({tuple(t["tokens"]) for t in body["activations"]}) == entry["texts"]  # no text twice
        scored = client.post("/score", json={**body, "explanation": body.get("suggestion", "the word the")})
        assert scored.status_code == 200, scored.get_data(as_text=True)
        answer = strict_json(scored)
        assert len(answer["simulations"]) == entry["texts"]
        assert answer["simulations"][0]["simulation"]["tokens"] == body["activations"][0]["tokens"]


def test_a_puzzle_suggests_its_true_explanation(client, puzzles):
    body = strict_json(client.get("/examples/puzzle-colors"))
    assert body["suggestion"] == puzzles["colors"]["explanation"]
    assert body["false_explanations"] == puzzles["colors"]["false_explanations"]
    assert body["activations"][0]["values"][0] == 9.0  # "Green", 9


def test_latent_texts_are_cut_around_their_maximum(client, neuronpedia_features):
    feature = next(f for f in neuronpedia_features if f["feature_index"] == 3)
    body = strict_json(client.get("/examples/gpt2-small-0-res-jb-3"))
    strongest = max(feature["activations"], key=lambda a: max(a["values"]))
    first = body["activations"][0]
    assert max(first["values"]) == max(strongest["values"])
    peak = strongest["values"].index(max(strongest["values"]))
    cut = first["values"].index(max(first["values"]))
    assert strongest["tokens"][peak - cut: peak - cut + 64] == first["tokens"]


def test_unknown_example_is_a_json_404(client):
    response = client.get("/examples/no-such-example")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    body = strict_json(response)
    assert body["code"] == "not_found" and "no-such-example" in body["error"]


def test_packaged_examples_are_what_the_build_script_makes(tmp_path, monkeypatch):
    if not (SHARED_DATA / "puzzles" / "puzzles.json").exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    from scripts import build_examples
    from web import examples

    packaged = json.loads(examples.DATA.read_text(encoding="utf-8"))["examples"]
    assert build_examples.build(SHARED_DATA) == packaged


def test_page_routes_are_not_rate_limited(make_client):
    client = make_client(rate_limit="2/minute")
    assert all(client.get(path).status_code == 200 for path in ["/", "/examples", "/viewer/viewer.css"] * 2)
