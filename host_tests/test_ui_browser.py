"""The dashboard in a real browser: Playwright driving Debian's chromium (uikit.chromium()),
against the real server, with real agent processes (CPython) updating while the rollout view
is watched. Every page is saved as a screenshot under the test's temporary directory
(screens/NN-name.png) for a person to look at.
"""

import hashlib
import json
import os
import time

import pytest
from agentkit import StallProxy, agent_config, run_agent, start_agent
from playwright.sync_api import expect, sync_playwright
from serverkit import add_sn, enable, new_model
from uikit import chromium

FW = os.urandom(300_000)


class Shots:
    def __init__(self, page, folder):
        self.page, self.folder, self.n = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name):
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def browser_page(tmp_path):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.set_default_timeout(20_000)
            yield page
        finally:
            browser.close()


def _agent(tmp, server, vendor, model, sn):
    cfg = {"vendor": vendor, "model": model, "sn": sn, "once": True, "version": "1.0"}
    return agent_config(tmp / sn, server, **cfg)


def _rollout(page):
    return {k: int(page.locator("#" + k).inner_text()) for k in ("runs", "downloading", "failed")}


def test_operator_session(server, tmp_path, browser_page):
    page = browser_page
    shot = Shots(page, tmp_path / "screens")
    vendor = server.add_vendor()
    api = server.session(cik=vendor["cik"])
    model = new_model(api)
    sns = ["dev-1", "dev-2", "dev-3"]
    for sn in sns + [f"spare-{i:03d}" for i in range(60)]:
        add_sn(api, model, sn)
    enable(api, model, "dev-2", vendor["rid"])
    enable(api, model, "dev-3", vendor["rid"])
    cfg = {sn: _agent(tmp_path, server, vendor["vendor"], model, sn) for sn in sns}
    base = f"{server.url}/ui/m/{vendor['vendor']}/{model}"

    # log in with the vendor CIK
    page.goto(server.url + "/ui/")
    expect(page).to_have_url(server.url + "/ui/login")
    shot("login")
    page.fill("#credential", vendor["cik"])
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Models")
    expect(page.locator(f"a[href$='/{model}/']").first).to_be_visible()
    shot("models")

    # the serial numbers: 63, paged by 50; find dev-1 by searching
    page.locator(f"a[href$='/{model}/']").first.click()
    expect(page.locator("h1")).to_have_text(f"Serial numbers of {model}")
    expect(page.locator("table.sns tbody tr")).to_have_count(50)
    shot("serial-numbers")
    page.click("a[rel=next]")
    expect(page.locator("table.sns tbody tr")).to_have_count(13)
    page.fill("input[name=q]", "dev-")
    page.click("text=Filter")
    expect(page.locator("table.sns tbody tr")).to_have_count(3)
    page.select_option("select[name=status]", "notactivated")
    page.click("text=Filter")
    expect(page.locator("table.sns tbody tr")).to_have_count(2)
    shot("search-filter")
    page.select_option("select[name=status]", "none")
    page.click("text=Filter")
    expect(page.locator("table.sns tbody tr")).to_have_count(1)
    page.click("text=dev-1")
    expect(page.locator("#status")).to_have_text("no client")
    shot("device-new")

    # enable, with its confirmation step; then the agent activates
    page.click("a.button:has-text('Enable')")
    expect(page.locator("h1")).to_have_text("Enable dev-1?")
    shot("confirm-enable")
    page.click("button:has-text('Yes, enable')")
    expect(page.locator("#done")).to_contain_text("Enable")
    expect(page.locator("#status")).to_have_text("notactivated")
    for sn in sns:
        r = run_agent("cpython", cfg[sn])
        assert r.returncode == 0, r.stderr
    page.reload()
    expect(page.locator("#status")).to_have_text("activated")
    expect(page.locator("#reports")).to_contain_text("active")
    expect(page.locator("table").last).to_contain_text("activated")
    shot("device-activated")

    # regenerate: the device's CIK stops working, it activates again on its next run
    page.click("a.button:has-text('Regenerate')")
    expect(page.locator("h1")).to_have_text("Regenerate dev-1?")
    shot("confirm-regenerate")
    page.click("button:has-text('Yes, regenerate')")
    expect(page.locator("#status")).to_have_text("notactivated")
    shot("device-regenerated")
    r = run_agent("cpython", cfg["dev-1"])
    assert r.returncode == 0 and "activating again" in r.stderr, r.stderr
    page.reload()
    expect(page.locator("#status")).to_have_text("activated")
    log_rows = page.locator("table").last.locator("tbody tr")
    expect(log_rows).to_have_count(2)  # two activations, newest first

    # upload a firmware: progress bar, sha256 and version filled in
    page.click("header .tabs >> text=Content")
    expect(page.locator("h1")).to_have_text(f"Content of {model}")
    page.set_input_files(
        "input[name=file]",
        files=[{"name": "fw.bin", "mimeType": "application/octet-stream", "buffer": FW}],
    )
    page.fill("input[name=cid]", "firmware-2")
    page.fill("input[name=version]", "2.0")
    page.click("button:has-text('Upload')")
    expect(page.locator("#upload-message")).to_contain_text(hashlib.sha256(FW).hexdigest())
    expect(page.locator("#percent")).to_have_text("100 %")
    assert page.eval_on_selector("#progress", "p => p.value === p.max && p.max > 0")
    shot("upload-done")
    page.click("#uploaded")
    expect(page.locator("#done")).to_have_text("Content uploaded.")
    expect(page.locator("code.sha")).to_have_text(hashlib.sha256(FW).hexdigest())
    shot("content")
    info = api.get(f"/provision/manage/content/{model}/firmware-2").text
    assert f"sha256={hashlib.sha256(FW).hexdigest()}&version=2.0" in info

    # the rollout: nobody runs 2.0 yet
    page.click("text=rollout")
    expect(page.locator("h1")).to_have_text("Rollout of firmware-2 (version 2.0)")
    assert _rollout(page) == {"runs": 0, "downloading": 0, "failed": 0}
    expect(page.locator("svg.chart").last).to_contain_text("1.0")
    shot("rollout-before")

    # dev-1 updates completely (apply, restart, confirm): 1 runs 2.0
    r = run_agent("cpython", cfg["dev-1"])
    assert r.returncode == 3, r.stderr  # reset into the new content
    r = run_agent("cpython", cfg["dev-1"])
    assert r.returncode == 0 and "confirmed" in r.stderr, r.stderr
    # dev-2 downloads through a proxy that stalls half-way: 1 downloading
    proxy = StallProxy(server.host, server.port, budget=len(FW) // 2)
    try:
        # dev-2's own state (its CIK) through the proxy; no throughput floor and a long
        # deadline, so that the stall lasts until released however slow this machine is
        conf = json.loads(cfg["dev-2"].read_text())
        conf.update(server=proxy.url, min_rate=0, timeout=120)
        stalled_cfg = tmp_path / "dev-2-proxy.json"
        stalled_cfg.write_text(json.dumps(conf))
        agent = start_agent("cpython", stalled_cfg)
        assert proxy.stalled.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page.reload()
            if _rollout(page)["downloading"] == 1:
                break
            time.sleep(0.5)
        assert _rollout(page) == {"runs": 1, "downloading": 1, "failed": 0}
        shot("rollout-during")
        proxy.release()
        out, _ = agent.communicate(timeout=60)
        assert agent.returncode == 3, out
    finally:
        proxy.close()
    r = run_agent("cpython", cfg["dev-2"])
    assert r.returncode == 0, r.stderr
    # dev-3 too
    assert run_agent("cpython", cfg["dev-3"]).returncode == 3
    assert run_agent("cpython", cfg["dev-3"]).returncode == 0
    page.reload()
    assert _rollout(page) == {"runs": 3, "downloading": 0, "failed": 0}
    bars = page.locator("svg.chart").last
    labels = bars.locator("text.label").all_text_contents()
    counts = [int(n) for n in bars.locator("text.count").all_text_contents()]
    assert dict(zip(labels, counts, strict=True)) == {"2.0": 3, "(not reported)": 60}
    shot("rollout-after")

    # the serial-number list shows versions and states; filter by version
    page.goto(base + "/?version=2.0")
    expect(page.locator("table.sns tbody tr")).to_have_count(3)
    expect(page.locator("table.sns tbody")).to_contain_text("active")
    shot("serial-numbers-version")

    # disable, then delete the content, each confirmed
    page.click("text=dev-3")
    page.click("a.button:has-text('Disable')")
    page.click("button:has-text('Yes, disable')")
    expect(page.locator("#status")).to_have_text("expired")
    expect(page.locator("a.button")).to_have_text(["Enable again"])
    shot("device-disabled")
    page.goto(base + "/content/")
    page.click("text=delete")
    expect(page.locator("h1")).to_have_text("Delete firmware-2?")
    page.click("button:has-text('Yes, delete')")
    expect(page.locator("#done")).to_have_text("Content deleted.")
    assert api.get(f"/provision/manage/content/{model}/").text == ""

    # log out: the pages are gone
    page.click("button:has-text('Log out')")
    expect(page).to_have_url(server.url + "/ui/login")
    page.goto(base + "/")
    expect(page).to_have_url(server.url + "/ui/login")
    print("screenshots in", shot.folder)
    api.close()
