"""The review page in a real headless browser (Debian's chromium + chromium-driver, Selenium) against a real worker
(``llmops monitors``), a real Redis and a judge model faked at the wire level.

A reviewer signs in, votes with the mouse and with the keyboard on side-by-side and single-answer items (one of
each in Korean), sees who wrote what only after each vote; the votes land in Redis and the ratings and agreement
series appear on the worker's /metrics; prompts and answers holding ``<script>`` and ``<img onerror>`` run nothing.

Needs ``apt-get install -y chromium chromium-driver`` and ``pip install selenium``: skipped without them, failed
when the environment variable CI is set.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.monitors.review_support import BEST, REVIEWER_KEYS, FakeJudge, add_samples, chat_sample, review_config
from tests.support import metric, monitors, scrape, wait_for

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")

PROMPT_XSS = "What does <script>window.__pwned='prompt';alert('prompt')</script> do? And <b>bold</b>?"
ANSWER_XSS_A = (
    f"It runs a script {BEST}. Set **textContent**, never innerHTML:\n\n```html\n"
    "<img src=x onerror=\"window.__pwned='code';alert('code')\">\n```"
)
ANSWER_XSS_B = (
    "Try this: <img src=x onerror=\"window.__pwned='answer';alert('answer')\"> <script>window.__pwned=1</script>"
)
KOREAN_Q = "서울의 인구는 얼마인가요?"
KOREAN_A = f"서울의 인구는 약 **940만 명**입니다. {BEST}"
KOREAN_B = "잘 모르겠습니다."
KOREAN_SINGLE = (
    "파이썬에서 리스트를 뒤집는 방법은 다음과 같습니다:\n\n```python\nitems.reverse()\n```\n\n`items[::-1]`도 됩니다."
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        _missing("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=ko-KR"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "ignore")  # an alert stays open: the test sees it
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip")
    pytest.skip(message)


def assert_nothing_ran(driver: Any) -> None:
    """No injected script ran, no alert opened, no injected element exists, and the page's policy never had to
    block anything (so the escaping alone kept the text inert)."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert driver.execute_script("return window.__pwned === undefined")
    assert driver.execute_script("return document.querySelectorAll('main img, main script, main b').length") == 0
    scripts = driver.execute_script("return Array.from(document.scripts).map(s => s.getAttribute('src'))")
    assert scripts == ["/review/static/review.js"]
    blocked = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert blocked == []


def press(driver: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def wait_url(driver: Any, part: str) -> None:
    wait_for(lambda: part in driver.current_url, timeout=10)


def test_a_reviewer_reviews_in_a_real_browser(tmp_path: Path, redis_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    xss = [{"role": "user", "content": PROMPT_XSS}]
    korean = [{"role": "user", "content": KOREAN_Q}]
    conversation = [
        {"role": "system", "content": "You answer in Korean."},
        {"role": "user", "content": "리스트가 뭐예요?"},
        {"role": "assistant", "content": "값을 순서대로 담는 자료형입니다."},
        {"role": "user", "content": "그럼 리스트를 어떻게 뒤집나요?"},
    ]
    samples = [
        chat_sample("req-x-a", xss, ANSWER_XSS_A, variant="alpha-7b"),
        chat_sample("req-x-b", xss, ANSWER_XSS_B, variant="beta-70b"),
        chat_sample("req-k-a", korean, KOREAN_A, variant="alpha-7b"),
        chat_sample("req-k-b", korean, KOREAN_B, variant="beta-70b"),
        chat_sample("req-s-ko", conversation, KOREAN_SINGLE + " " + BEST, model="chat"),
        chat_sample("req-s-en", [{"role": "user", "content": PROMPT_XSS}], ANSWER_XSS_B, model="chat"),
    ]
    client = redis.Redis.from_url(redis_url)
    with FakeJudge() as judge:
        config = review_config(tmp_path, redis_url, judge.url)
        add_samples(redis_url, samples)
        with monitors(config) as worker:
            wait_for(lambda: metric(scrape(worker), "llm_monitor_samples_processed_total", outcome="ok") == 6)
            wait_for(lambda: [client.zcard(f"llmops:review:queue:{q}") for q in ("ab", "graded")] == [2, 2])

            # the policy is on every page, and the sign-in page wants a key
            with urllib.request.urlopen(worker + "/review/login", timeout=5) as response:
                csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp

            browser.get(worker + "/review")
            wait_url(browser, "/review/login")
            browser.find_element(By.ID, "key").send_keys("not-a-key")
            browser.find_element(By.ID, "signin").click()
            try:
                wait_for(lambda: browser.find_elements(By.ID, "error"), timeout=10)
            except TimeoutError:
                print(browser.current_url, browser.page_source)
                raise
            assert "Unknown reviewer key" in browser.find_element(By.ID, "error").text
            browser.find_element(By.ID, "key").send_keys(REVIEWER_KEYS["alice"])
            browser.find_element(By.ID, "signin").click()
            wait_for(lambda: browser.find_elements(By.ID, "reviewer"), timeout=10)
            assert browser.find_element(By.ID, "reviewer").text == "alice"

            # side by side: the first pair with the mouse, the second with the keyboard
            revealed = []
            browser.find_element(By.ID, "start-ab").click()
            for how in ("mouse", "keyboard"):
                wait_for(lambda: browser.find_elements(By.ID, "vote"), timeout=10)
                page = browser.page_source
                assert "alpha-7b" not in page and "beta-70b" not in page  # anonymous until the vote
                text = browser.find_element(By.TAG_NAME, "main").text
                if KOREAN_Q in text:
                    assert "약 940만 명입니다" in text and "잘 모르겠습니다." in text
                else:
                    assert "<script>window.__pwned='prompt';alert('prompt')</script>" in text
                    assert "<img src=x onerror=" in text
                    assert browser.find_elements(By.CSS_SELECTOR, "pre code.language-html")
                assert_nothing_ran(browser)
                if how == "mouse":
                    browser.find_element(By.ID, "vote-left").click()
                else:
                    press(browser, "2")
                wait_url(browser, "/reveal")
                left = browser.find_element(By.CSS_SELECTOR, "#reveal-left .identity").text
                right = browser.find_element(By.CSS_SELECTOR, "#reveal-right .identity").text
                assert {left, right} == {"alpha-7b", "beta-70b"}
                revealed.append(left if how == "mouse" else right)  # the winner the reviewer picked
                assert_nothing_ran(browser)
                if how == "mouse":
                    browser.find_element(By.ID, "next").click()
                else:
                    press(browser, "n")
            wait_for(lambda: browser.find_elements(By.ID, "empty"), timeout=10)

            # single answers: grade with the mouse (Korean conversation, a Korean comment), then with the keyboard
            browser.get(worker + "/review/q/graded")
            for how in ("mouse", "keyboard"):
                wait_for(lambda: browser.find_elements(By.ID, "vote"), timeout=10)
                text = browser.find_element(By.TAG_NAME, "main").text
                assert_nothing_ran(browser)
                if "리스트를 어떻게 뒤집나요?" in text:
                    assert "값을 순서대로 담는 자료형입니다." in text and "You answer in Korean." in text
                    assert browser.find_element(By.CSS_SELECTOR, "#answer pre code.language-python").text == (
                        "items.reverse()"
                    )
                if how == "mouse":
                    browser.find_element(By.CSS_SELECTOR, "label.grade-option:nth-of-type(9)").click()
                    browser.find_element(By.ID, "comment").send_keys("좋은 답변입니다 <script>x</script>")
                    browser.find_element(By.ID, "submit").click()
                else:
                    press(browser, "4")
                    press(browser, Keys.ENTER)
                wait_url(browser, "/reveal")
                assert browser.find_element(By.CSS_SELECTOR, "#reveal-answer .identity").text == "chat"
                assert browser.find_element(By.ID, "your-vote").text.endswith("/ 10")
                browser.find_element(By.ID, "next").click()
            wait_for(lambda: browser.find_elements(By.ID, "empty"), timeout=10)

            browser.get(worker + "/review/leaderboard")
            board = browser.find_element(By.ID, "board-app").text
            assert "human" in board and "pairwise" in board and "alpha-7b" in board
            assert "Judges vs reviewers" in browser.find_element(By.TAG_NAME, "main").text

            after = scrape(worker)
            for variant in ("alpha-7b", "beta-70b"):
                for name in ("rating", "rating_lower", "rating_upper"):
                    key = (f"llm_judge_variant_{name}", (("model", "app"), ("source", "human"), ("variant", variant)))
                    assert key in after
                assert metric(after, "llm_judge_variant_battles", model="app", variant=variant, source="human") == 2
            labels = {"model": "app", "judge": "pairwise"}
            assert metric(after, "llm_judge_human_items", **labels) == 2
            assert ("llm_judge_human_agreement_ratio", tuple(sorted({**labels, "ties": "included"}.items()))) in after
            assert metric(after, "llm_judge_human_position_bias_ratio", **labels) == 0  # the fake judge is consistent
            assert metric(after, "llm_judge_human_items", model="chat", judge="llm_single") == 2
            assert metric(after, "llm_review_votes_total", kind="pair") == 2
            assert metric(after, "llm_review_votes_total", kind="single") == 2
            # the judge preferred alpha-7b twice: agreement is the share of the reviewer's picks that were alpha-7b
            agreed = revealed.count("alpha-7b") / 2
            assert metric(after, "llm_judge_human_agreement_ratio", ties="included", **labels) == agreed
            # kappa: the judge always said a, so chance agreement is the reviewer's share of a; when that share is 1,
            # kappa is undefined and not exported; otherwise it is 0 (no better than chance)
            kappa = ("llm_judge_human_kappa", tuple(sorted(labels.items())))
            assert after.get(kappa) == (None if agreed == 1 else 0.0)

    # the votes are in Redis, beside the judge results, under the reviewer's name
    for request_id in ("req-x-a", "req-x-b", "req-k-a", "req-k-b", "req-s-ko", "req-s-en"):
        votes = client.hgetall(f"llmops:votes:{request_id}")
        assert len(votes) == 1 and next(iter(votes)).decode().endswith("|alice")
    tally = {k.decode(): int(v) for k, v in client.hgetall("llmops:human:app").items()}
    assert sum(tally.values()) == 2
    comments = [v for v in client.hgetall("llmops:votes:req-s-ko").values()] + [
        v for v in client.hgetall("llmops:votes:req-s-en").values()
    ]
    assert any("좋은 답변입니다 <script>x</script>".encode() in c for c in comments)
