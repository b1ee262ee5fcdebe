"""The viewer in a real headless Chromium (selenium), against the app on a loopback port.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and chromium-driver;
scripts/test installs them): nothing is downloaded at run time. Without them the tests fail,
saying what to install; they never skip. Each answer the page shows is checked
against the same request sent with `requests`: the offline simulator is deterministic.
Screenshots of the score and compare views go to docs/screenshots/.
"""
from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest
import requests
from werkzeug.serving import make_server

from server import create_app
from tests.conftest import ROOT, SHARED_DATA, make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT = 90  # seconds a step may take on a loaded machine before the test gives up

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

XSS_TOKEN = '<img src=x onerror="window.__pwned=1;alert(1)">'


@contextmanager
def serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture(scope="module")
def base_url():
    with serving(create_app(make_settings())) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"not installed: {', '.join(missing)} (scripts/install-test-packages, or apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,2400", "--force-device-scale-factor=1", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition):
    return WebDriverWait(driver, WAIT).until(lambda d: condition(d))


def open_page(driver, url):
    driver.get(url)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")


def load_example(driver, example_id):
    Select(driver.find_element(By.ID, "example")).select_by_value(example_id)
    wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == example_id)


def scored_explanation(driver):
    return driver.find_element(By.ID, "score").get_attribute("data-explanation")


def score_from_page(driver, explanation):
    field = driver.find_element(By.ID, "explanation")
    field.clear()
    field.send_keys(explanation)
    driver.find_element(By.ID, "score-btn").click()
    wait_for(driver, lambda d: scored_explanation(d) == explanation)


def post(base_url, path, body):
    response = requests.post(f"{base_url}{path}", json=body, timeout=WAIT)
    assert response.status_code == 200, response.text
    return response.json()


def example_body(base_url, example_id):
    return requests.get(f"{base_url}/examples/{example_id}", timeout=WAIT).json()


def as_float(text):
    return None if text == "" else float(text)


def assert_page_shows(driver, texts, answer):
    """#score and every token cell carry exactly the values of `answer` for `texts`."""
    assert as_float(driver.find_element(By.ID, "score").get_attribute("data-score")) == answer["score"]
    rows = driver.find_elements(By.CSS_SELECTOR, "#texts > li")
    assert len(rows) == len(texts)
    cells = driver.find_elements(By.CSS_SELECTOR, "#texts .tok")
    assert len(cells) == sum(len(t["tokens"]) for t in texts)
    shown = [(float(c.get_attribute("data-true")), as_float(c.get_attribute("data-sim"))) for c in cells]
    expected = [
        (true, sim)
        for text, simulation in zip(texts, answer["simulations"])
        for true, sim in zip(text["values"], simulation["simulation"]["expected_activations"])
    ]
    assert shown == expected


def assert_keyboard_reaches_the_tokens(driver):
    """One tab stop per text; the arrow keys move between tokens and texts; a focused token
    tells its values in its aria-label and in a visible box (its ::after content)."""
    rows = driver.find_elements(By.CSS_SELECTOR, "#texts .cells")
    for row in rows:
        stops = [c.get_attribute("tabindex") for c in row.find_elements(By.CSS_SELECTOR, ".tok")]
        assert stops == ["0"] + ["-1"] * (len(stops) - 1)
    driver.execute_script("document.getElementById('share').focus()")
    keys = ActionChains(driver)
    keys.send_keys(Keys.TAB).perform()
    first = rows[0].find_elements(By.CSS_SELECTOR, ".tok")[0]
    assert driver.switch_to.active_element == first
    keys.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_DOWN).perform()
    focused = driver.switch_to.active_element
    assert focused == rows[1].find_elements(By.CSS_SELECTOR, ".tok")[1]
    label = focused.get_attribute("aria-label")
    assert label == focused.get_attribute("title")
    assert f"true {float(focused.get_attribute('data-true')):.3f}" in label
    assert f"simulated {float(focused.get_attribute('data-sim')):.3f}" in label
    box = driver.execute_script("return getComputedStyle(arguments[0], '::after').content", focused)
    assert box == json.dumps(label, ensure_ascii=False)


def test_score_an_example(browser, base_url):
    open_page(browser, base_url + "/")
    load_example(browser, "puzzle-colors")
    body = example_body(base_url, "puzzle-colors")
    explanation = body["suggestion"]
    score_from_page(browser, explanation)

    answer = post(base_url, "/score", {"explanation": explanation, "activations": body["activations"], "simulator": "offline"})
    assert_page_shows(browser, body["activations"], answer)
    assert_keyboard_reaches_the_tokens(browser)
    per_text = browser.find_elements(By.CSS_SELECTOR, "#texts [data-text-score]")
    assert [as_float(p.get_attribute("data-text-score")) for p in per_text] == [
        s["ev_correlation_score"] for s in answer["simulations"]
    ]
    # The state is in the URL, ready to share.
    query = parse_qs(urlparse(browser.current_url).query)
    assert query["example"] == ["puzzle-colors"] and query["explanation"] == [explanation]

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.ID, "result").screenshot(str(SCREENSHOTS / "score.png"))

    # Other texts: the answer about the previous ones goes away.
    load_example(browser, "puzzle-of")
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert parse_qs(urlparse(browser.current_url).query)["example"] == ["puzzle-of"]


def test_compare_explanations(browser, base_url):
    open_page(browser, base_url + "/?example=puzzle-colors")
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "puzzle-colors")
    browser.find_element(By.ID, "compare-fill").click()
    explanations = [line for line in browser.find_element(By.ID, "compare-input").get_attribute("value").split("\n") if line]
    body = example_body(base_url, "puzzle-colors")
    assert explanations == [body["suggestion"], *body["false_explanations"]]
    browser.find_element(By.ID, "compare-btn").click()
    result = browser.find_element(By.ID, "compare-result")
    wait_for(browser, lambda d: result.get_attribute("data-state") == "done")

    has_compare = requests.post(f"{base_url}/compare", json={}, timeout=WAIT).status_code != 404
    assert result.get_attribute("data-via") == ("/compare" if has_compare else "/score per explanation")
    scores = {
        e: post(base_url, "/score", {"explanation": e, "activations": body["activations"], "simulator": "offline"})["score"]
        for e in explanations
    }
    rows = browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
    shown = [(r.find_element(By.CSS_SELECTOR, "button").text, as_float(r.get_attribute("data-score"))) for r in rows]
    assert shown == sorted(scores.items(), key=lambda item: -item[1])  # best first
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-chart circle")) == len(explanations)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.ID, "compare").screenshot(str(SCREENSHOTS / "compare.png"))


def test_explain_dry_run_then_generate_and_score(browser, base_url):
    open_page(browser, base_url + "/")
    load_example(browser, "gpt2-small-0-res-jb-0")
    Select(browser.find_element(By.ID, "style")).select_by_value("summary")
    browser.find_element(By.ID, "dry-run").click()
    prompt = browser.find_element(By.ID, "prompt")
    wait_for(browser, lambda d: prompt.get_attribute("data-tokens"))

    body = example_body(base_url, "gpt2-small-0-res-jb-0")
    dry = post(base_url, "/explain", {"activations": body["activations"], "style": "summary", "dry_run": True})
    assert int(prompt.get_attribute("data-tokens")) == dry["prompt_tokens"]
    shown = browser.find_elements(By.CSS_SELECTOR, "#prompt-messages pre")
    assert [p.get_attribute("textContent") for p in shown] == [m["content"] for m in dry["messages"]]

    browser.find_element(By.ID, "generate").click()
    written = post(base_url, "/explain", {"activations": body["activations"], "style": "summary"})["explanation"]
    wait_for(browser, lambda d: scored_explanation(d) == written)
    assert browser.find_element(By.ID, "explanation").get_attribute("value") == written


def test_a_shared_link_scores_on_load(browser, base_url):
    explanation = "numbers and years"
    open_page(browser, f"{base_url}/?example=puzzle-years&explanation={quote(explanation)}&simulator=offline")
    wait_for(browser, lambda d: scored_explanation(d) == explanation)
    body = example_body(base_url, "puzzle-years")
    answer = post(base_url, "/score", {"explanation": explanation, "activations": body["activations"], "simulator": "offline"})
    assert_page_shows(browser, body["activations"], answer)


def test_untrusted_text_is_shown_as_text(browser, base_url):
    open_page(browser, base_url + "/")
    texts = [
        {"tokens": ["a", XSS_TOKEN, " fox"], "values": [0, 3, 1]},
        {"tokens": ["<b>", "bold", "</b>"], "values": [1, 0, 0]},
    ]
    browser.find_element(By.CSS_SELECTOR, "#paste-box summary").click()
    browser.find_element(By.ID, "paste").send_keys(json.dumps({"activations": texts}))
    browser.find_element(By.ID, "paste-load").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "pasted")
    explanation = '<script>window.__pwned=1</script> images'
    score_from_page(browser, explanation)

    shown = [c.get_attribute("textContent") for c in browser.find_elements(By.CSS_SELECTOR, "#texts .tok .t")]
    assert shown == texts[0]["tokens"] + texts[1]["tokens"]
    assert explanation in browser.find_element(By.ID, "result-h").text
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main script, main b") == []
    assert browser.execute_script("return window.__pwned === undefined")
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    # Nothing even tried to run: the policy reported no blocked inline script or handler.
    assert [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]] == []


def test_open_an_saedashboard_export_and_a_neuronpedia_feature(browser, base_url, tmp_path):
    export = SHARED_DATA / "neuronpedia-gpt2-small-res-jb" / "batch-0.json"
    if not export.exists():
        pytest.skip(f"shared data not found at {export}")
    open_page(browser, base_url + "/")
    browser.find_element(By.ID, "file").send_keys(str(export))
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "pasted")
    picker = Select(browser.find_element(By.ID, "feature"))
    assert [o.text for o in picker.options] == ["latent 0", "latent 1 (all zero)"]
    assert picker.first_selected_option.text == "latent 0"  # the silent latent is not chosen
    assert browser.find_element(By.ID, "load-status").text == "latent 0: 38 texts, 4826 tokens"

    feature = {
        "index": "7",
        "activations": [{"tokens": [" a", " fox"], "values": [0, 2], "maxValue": 2}],
        "explanations": [{"description": "foxes"}],
    }
    path = tmp_path / "feature.json"
    path.write_text(json.dumps(feature))
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait_for(browser, lambda d: d.find_element(By.ID, "load-status").text.startswith("latent 7:"))
    assert not browser.find_element(By.ID, "feature-pick").is_displayed()
    browser.find_element(By.ID, "suggestion").click()
    assert browser.find_element(By.ID, "explanation").get_attribute("value") == "foxes"


def test_the_secret_is_typed_sent_as_a_header_and_kept_only_for_the_tab(browser):
    key = "viewer-test-key-3f9a"
    with serving(create_app(make_settings(server_key=key))) as url:
        open_page(browser, url + "/")
        assert "a secret is required" in browser.find_element(By.ID, "service").text
        load_example(browser, "puzzle-of")  # the packaged examples need no secret
        browser.find_element(By.ID, "explanation").send_keys("the word of")
        browser.find_element(By.ID, "score-btn").click()
        status = browser.find_element(By.ID, "score-status")
        wait_for(browser, lambda d: "unauthorized" in status.text)

        browser.find_element(By.ID, "secret").send_keys(key)
        browser.find_element(By.ID, "score-btn").click()
        wait_for(browser, lambda d: scored_explanation(d) == "the word of")
        stored = browser.execute_script(
            "return [sessionStorage.getItem('neuron-interp.secret'), localStorage.length, document.cookie]"
        )
        assert stored == [key, 0, ""]
        assert key not in browser.current_url and key not in browser.find_element(By.TAG_NAME, "body").text


def test_intervals_and_pairs_from_compare_are_shown(browser):
    """The page shows each score's `score_interval` and the pairs of the service's real POST /compare."""
    app = create_app(make_settings())
    with serving(app) as url:
        open_page(browser, f"{url}/?example=puzzle-colors&explanation=colors&compare=colors&compare=smell")
        wait_for(browser, lambda d: d.find_element(By.ID, "compare-result").get_attribute("data-state") == "done")
        body = example_body(url, "puzzle-colors")
        answer = post(url, "/compare", {"explanations": ["colors", "smell"], "activations": body["activations"], "simulator": "offline"})
        scored = post(url, "/score", {"explanation": "colors", "activations": body["activations"], "simulator": "offline"})
        iv = scored["score_interval"]
        assert browser.find_element(By.ID, "interval").text == (
            f"{round(iv['level'] * 100)}% interval [{iv['low']:.3f}, {iv['high']:.3f}] · {iv['method']}"
        )
        assert browser.find_element(By.ID, "compare-result").get_attribute("data-via") == "/compare"
        rows = browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
        ranked = sorted(answer["results"], key=lambda a: -a["score"])
        assert [r.find_elements(By.TAG_NAME, "td")[3].text for r in rows] == [
            f"[{a['score_interval']['low']:.3f}, {a['score_interval']['high']:.3f}]" for a in ranked
        ]
        assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-chart line.whisker")) == 3 * len(rows)
        pair = answer["pairs"][0]
        assert browser.find_element(By.ID, "compare-pairs").text == (
            f"“colors” − “smell”: {pair['difference']:.3f} [{pair['interval']['low']:.3f}, "
            f"{pair['interval']['high']:.3f}] · adjusted p {pair['p_adjusted']:.3f}"
        )
