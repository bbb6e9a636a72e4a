"""The Airflow UI of the real deployment, seen in Debian's headless chromium (selenium + chromedriver).

1. the connection form for ``azure_remote_rendering`` shows the ARR fields with their labels and
   help texts (standard fields relabelled, schema and port hidden); a connection saved from it is
   stored with the fields the hook reads;
2. the trigger form of ``arr_render_session`` shows every param with its description; a run
   triggered from it with a changed param carries that value in its conf, and succeeds;
3. that run's grid marks ``create`` as the setup and ``stop`` as the teardown.

Screenshots go to a temporary folder, or to ``$ARR_UI_SCREENSHOTS`` (``make screenshots`` sets it to
``docs/img``, where the README's pictures live). The tests are skipped, saying so, where chromium
or chromedriver is missing (``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Admin
from tests.deployment.airflow_deployment import DAG_ID, Deployment, only_session

pytestmark = [pytest.mark.slow]

CHROMIUM = os.environ.get("ARR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ARR_CHROMEDRIVER", "/usr/bin/chromedriver")
# The flags this machine needs (no network beyond loopback, no GPU, root).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WAIT = 30.0
# What the provider declares for the form (airflow_provider_arr.get_provider_info).
STANDARD_LABELS = ("Service endpoint URL", "Account ID", "Account Key")
EXTRA_FIELDS = {
    "Region": "Builds the endpoint when the host is empty",
    "Account domain": "the STS is https://sts.{domain}",
    "STS endpoint": "Base URL of the Secure Token Service",
    "API version": "v1 (default) or 2021-01-01",
}
PARAMS = {
    "size": "Server size: standard, or premium",
    "max_lease_time": "Lease as [d.]hh:mm:ss",
    "models": "Asset container URLs to preload",
    "poll_interval": "Seconds between status reads",
    "render_seconds": "How long the placeholder render step pretends to work",
    "simulate_render_failure": "Make the placeholder render step raise",
}
# react-icons' FiArrowUpRight / FiArrowDownRight, which the grid draws after setup / teardown tasks.
SETUP_ICON = "svg polyline[points='7 7 17 7 17 17']"
TEARDOWN_ICON = "svg polyline[points='17 7 17 17 7 17']"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("ARR_UI_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Browser:
    """A headless chromium page, with waits that report what the page showed when they fail."""

    def __init__(self, driver: Any, base_url: str, shots: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.base_url = base_url
        self.shots = shots
        self.wait = WebDriverWait(driver, WAIT)

    def open(self, path: str, width: int = 1400, height: int = 1000) -> None:
        self.driver.set_window_size(width, height)
        self.driver.get(self.base_url + path)

    def find(self, by: str, selector: str) -> Any:
        """The first visible element that matches (waiting for one)."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException

        def visible(driver: Any) -> Any:
            try:
                return next((e for e in driver.find_elements(by, selector) if e.is_displayed()), False)
            except StaleElementReferenceException:  # re-rendered while looked at: look again
                return False

        try:
            return self.wait.until(visible)
        except TimeoutException:
            self.failure_shot()
            body = self.driver.find_element("tag name", "body").text
            pytest.fail(f"nothing visible matches {selector!r} after {WAIT:.0f} s; the page shows:\n{body}")

    def click(self, by: str, selector: str) -> None:
        self.find(by, selector).click()

    def text_visible(self, text: str) -> Any:
        return self.find("xpath", f"//*[text()[contains(normalize-space(.), {json.dumps(text)})]]")

    def shot(self, name: str) -> Path:
        path = self.shots / name
        self.driver.save_screenshot(str(path))
        return path

    def failure_shot(self) -> None:
        self.driver.save_screenshot(str(self.shots / "failure.png"))


@pytest.fixture(scope="module")
def browser(deployment: Deployment, shots: Path) -> Iterator[Browser]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = shots.parent / f"{shots.name}-chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver: selenium must not try to download one (no network here).
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield Browser(driver, deployment.api_url, shots)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_connection_form_shows_the_arr_fields(deployment: Deployment, admin: Admin, browser: Browser) -> None:
    browser.open("/connections", height=1500)
    browser.click("xpath", "//button[contains(., 'Add Connection')]")
    browser.find("name", "connection_id").send_keys("arr_from_the_ui")
    kind = browser.find("css selector", "[role=dialog] input[role=combobox]")
    kind.click()
    kind.send_keys("Azure Remote")
    browser.click("xpath", "//*[@role='option'][normalize-space(.)='Azure Remote Rendering']")

    for label in STANDARD_LABELS:
        browser.text_visible(label)
    dialog = browser.find("css selector", "[role=dialog]").text
    for hidden in ("Schema", "Port"):
        assert hidden not in dialog.splitlines(), f"{hidden} should be hidden for this connection type"
    assert browser.find("name", "password").get_attribute("type") == "password"

    browser.find("name", "host").send_keys(deployment.emulator_url)
    browser.find("name", "login").send_keys(deployment.account_id)
    browser.find("name", "password").send_keys(deployment.account_key)
    browser.shot("connection-form.png")  # the key is a password field: dots, never the key
    browser.click("xpath", "//button[normalize-space(.)='Extra Fields']")
    for label, help_text in EXTRA_FIELDS.items():
        browser.text_visible(label)
        browser.text_visible(help_text)
    browser.find("id", "element_sts_endpoint").send_keys(deployment.emulator_url)
    browser.shot("connection-form-extras.png")

    browser.click("xpath", "//button[normalize-space(.)='Save']")
    browser.find("xpath", "//td[normalize-space(.)='arr_from_the_ui']")
    stored = deployment.api("GET", "/api/v2/connections/arr_from_the_ui").json()
    assert stored["conn_type"] == "azure_remote_rendering"
    assert stored["login"] == deployment.account_id and stored["password"] == "***"
    assert json.loads(stored["extra"])["sts_endpoint"] == deployment.emulator_url
    # ... and the hook accepts what the form stored (Airflow's own connection test, through the API;
    # the list page's Test button sends port 0 for a port-less connection, which Airflow 3.3 refuses).
    body = {k: v for k, v in stored.items() if k not in ("description", "team_name")}
    tested = deployment.api("POST", "/api/v2/connections/test", json=body).json()
    assert tested["status"] is True and "0 active session(s)" in tested["message"], tested
    assert deployment.account_key not in json.dumps(tested)
    deployment.api("DELETE", "/api/v2/connections/arr_from_the_ui")


def test_trigger_form_shows_the_params_and_a_run_from_it_ends_with_the_teardown(
    deployment: Deployment, admin: Admin, browser: Browser
) -> None:
    deployment.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    runs_path = f"/api/v2/dags/{DAG_ID}/dagRuns"
    before = {r["dag_run_id"] for r in deployment.api("GET", runs_path).json()["dag_runs"]}
    browser.open(f"/dags/{DAG_ID}", height=1500)
    browser.click("css selector", "button[aria-label='Trigger Dag']")
    browser.text_visible("Run Parameters")
    for name, description in PARAMS.items():
        browser.text_visible(name)
        browser.text_visible(description)
    from selenium.webdriver.common.keys import Keys

    interval = browser.find("name", "element_poll_interval")
    assert interval.get_attribute("value") == "10"  # the param's default
    interval.click()
    interval.send_keys(Keys.CONTROL, "a")
    interval.send_keys("5", Keys.TAB)  # the service's minimum, typed into the form
    browser.shot("trigger-form.png")
    browser.click("xpath", "//*[@role='dialog']//button[normalize-space(.)='Trigger']")
    browser.text_visible("Dag run has been successfully triggered")

    runs = deployment.api("GET", runs_path).json()["dag_runs"]
    new = [r for r in runs if r["dag_run_id"] not in before]
    assert len(new) == 1, runs
    run_id = new[0]["dag_run_id"]
    assert new[0]["conf"]["poll_interval"] == 5, new[0]["conf"]
    assert new[0]["conf"]["size"] == "standard" and new[0]["conf"]["models"] == []
    state = deployment.wait_run(run_id, timeout=150)
    states = deployment.ti_states(run_id)
    assert state == "success" and set(states.values()) == {"success"}, states
    session = only_session(deployment, admin)
    assert session["status"] in ("stopping", "stopped") and admin.active() == 0, session

    browser.open(f"/dags/{DAG_ID}/runs/{run_id}", height=800)
    stop = browser.find("css selector", "[data-testid='task-stop']")
    create = browser.find("css selector", "[data-testid='task-create']")
    assert stop.find_elements("css selector", TEARDOWN_ICON), "stop is not drawn as a teardown"
    assert create.find_elements("css selector", SETUP_ICON), "create is not drawn as a setup"
    assert not browser.find("css selector", "[data-testid='task-render']").find_elements(
        "css selector", "svg"
    ), "render is a plain task"
    browser.text_visible("ArrStopSessionOperator")
    browser.shot("run-grid.png")
