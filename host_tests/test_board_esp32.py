"""boards/esp32.py in the MicroPython unix port on the esp32/network/machine fakes.

Each boot() runs one scenario of host_tests/mpy_programs/board_esp32.py as one boot of the
fake board; the fake flash, NVS, otadata and bootloader persist in the board directory
between boots (host_tests/fakes/_fakehw.py).
"""

import json

import pytest
from fakes.hwkit import app_image, arm, events, flash, make_hw, nvs, out, run_program, running


def boot(hw, scenario, *args):
    """One boot of the fake board running a scenario of mpy_programs/board_esp32.py."""
    return run_program(hw, "board_esp32", scenario, *args)


@pytest.fixture
def hw(tmp_path):
    return make_hw(tmp_path)


# -- storage ---------------------------------------------------------------------------------


def test_storage_two_generations_alternate(hw):
    r = boot(hw, "load")
    assert out(r) == [None]
    boot(hw, "save", "one", "two", "three")
    r = boot(hw, "stored")
    assert out(r) == "three"
    space = nvs(hw)["exoprov"]
    seqs = {k: int.from_bytes(bytes.fromhex(v[1])[2:6], "little") for k, v in space.items()}
    assert seqs == {"r0": 3, "r1": 2}  # r0 has seq 1 then 3, r1 seq 2


def test_storage_corrupt_newest_falls_back_then_overwritten(hw):
    boot(hw, "save", "old", "new")
    data = json.loads((hw / "nvs.json").read_text())
    blob = bytearray.fromhex(data["exoprov"]["r1"][1])
    blob[-1] ^= 0xFF  # flip a bit in the newest generation's data
    data["exoprov"]["r1"][1] = blob.hex()
    (hw / "nvs.json").write_text(json.dumps(data))
    r = boot(hw, "stored")
    assert out(r) == "old"
    boot(hw, "save", "newer")
    assert "r1" in nvs(hw)["exoprov"]
    r = boot(hw, "stored")
    assert out(r) == "newer"


def test_storage_record_too_large_refused(hw):
    r = boot(hw, "save_size", 5000)
    assert r.returncode == 1 and "ValueError: esp32: record of 5000" in r.stdout + r.stderr


@pytest.mark.parametrize(
    "at,mode,expect",
    [(1, "before", "old"), (1, "after", "old"), (2, "before", "old"), (2, "after", "new")],
)
def test_power_cut_during_save_leaves_old_or_new(hw, at, mode, expect):
    boot(hw, "save", "old")
    arm(hw, at, mode)  # op 1: set_blob, op 2: commit of that key
    r = boot(hw, "save", "new")
    assert r.returncode == 137, r.stderr
    assert any(e.startswith("powercut") for e in events(hw))
    r = boot(hw, "stored")
    assert out(r) == expect
    boot(hw, "save", "after")  # and the board saves normally after the cut
    assert out(boot(hw, "stored")) == "after"


def test_power_cut_between_keys_of_one_commit(hw):
    # A commit of two keys (ota marker + record) lands one key at a time: the record stays
    # whole whichever side of the cut it is on.
    boot(hw, "save", "old")
    for at in (1, 2, 3, 4):
        arm(hw, at, "after")
        r = boot(hw, "two_keys_one_commit")
        assert r.returncode == 137
        got = out(boot(hw, "stored"))
        assert got == "old"


# -- slot --------------------------------------------------------------------------------------


def test_slot_write_read_back_and_rewrite(hw, tmp_path):
    image = app_image(3 * 4096 + 1000, b"ab")
    (tmp_path / "img.bin").write_bytes(image)
    assert out(boot(hw, "write_twice", tmp_path / "img.bin")) == [len(image), True, True]
    assert flash(hw, "ota_1")[: len(image)] == image
    assert flash(hw, "ota_1")[len(image) : len(image) + 10] == b"\xff" * 10


def test_fake_flash_enforces_erase_and_sector_size(hw):
    assert out(boot(hw, "flash_rules")) == [5, -0x104]  # EIO (not erased), ESP_ERR_INVALID_SIZE


def test_resume_after_reset_mid_write(hw, tmp_path):
    image = app_image(5 * 4096, b"xyz")
    (tmp_path / "img.bin").write_bytes(image)
    name = tmp_path / "img.bin"
    boot(hw, "write_part", name, 0, 8192)
    arm(hw, 1, "torn")  # the next write is torn by a power cut
    r = boot(hw, "write_part", name, 8192)
    assert r.returncode == 137
    assert out(boot(hw, "resume", name)) == [True, True]


def test_image_too_big_and_not_an_image(hw, tmp_path):
    (tmp_path / "bad.bin").write_bytes(b"\x00" * 5000)
    res = out(boot(hw, "refused", tmp_path / "bad.bin"))
    assert res[0][0] == 28 and "over partition ota_1" in res[0][1]
    assert "not an app image" in res[1]
    assert "refused the image" in res[2]
    assert out(boot(hw, "boot_label")) == "ota_0"


def test_no_ota_partitions_clear_error(tmp_path):
    hw = make_hw(tmp_path, ota=0, factory=True)
    assert out(boot(hw, "no_ota")) == [
        2,
        "esp32: no OTA partitions in this firmware's table",
        "rec",
    ]


# -- apply, boot, confirm, rollback through the bootloader model -------------------------------


def _apply(hw, tmp_path, tag=b"new"):
    image = app_image(2 * 4096 + 123, tag)
    (tmp_path / "img.bin").write_bytes(image)
    r = boot(hw, "apply", tmp_path / "img.bin")
    assert r.returncode == 0, r.stderr
    return image


def test_apply_boot_confirm(hw, tmp_path):
    _apply(hw, tmp_path)
    assert running(hw) == "ota_0"
    r = boot(hw, "confirm")
    assert out(r) == "ota_1"
    assert "confirm ota_1" in events(hw)
    for _ in range(2):  # confirmed: it stays
        boot(hw, "confirm")
        assert running(hw) == "ota_1"
    # the next update goes to the other partition, and back again
    _apply(hw, tmp_path, b"third")
    assert out(boot(hw, "confirm")) == "ota_0"


def test_reset_before_confirm_boots_old_image(hw, tmp_path):
    _apply(hw, tmp_path)
    boot(hw, "start")  # the new image boots and resets before it is confirmed
    assert running(hw) == "ota_1"
    res = out(boot(hw, "confirm_after_fallback"))
    assert res[0] == "ota_0" and "not the new image" in res[1] and res[2] == "ota_0"
    assert "rollback ota_1 aborted" in events(hw)
    boot(hw, "start")
    assert running(hw) == "ota_0"


def test_rollback_when_health_check_fails(hw, tmp_path):
    _apply(hw, tmp_path)
    r = boot(hw, "rollback")
    assert out(r) == "ota_1"
    for _ in range(3):  # the old image boots and stays (the board confirms it on start)
        boot(hw, "start")
        assert running(hw) == "ota_0"
    assert "confirm ota_0" in events(hw)


def test_rollback_before_reset_cancels_apply(hw, tmp_path):
    _apply(hw, tmp_path)
    boot(hw, "begin_then_rollback")  # still running ota_0, BOOT was ota_1
    for _ in range(2):
        boot(hw, "start")
        assert running(hw) == "ota_0"


def test_apply_twice_in_one_boot_is_harmless(hw, tmp_path):
    image = app_image(5000, b"tw")
    (tmp_path / "img.bin").write_bytes(image)
    assert boot(hw, "apply", tmp_path / "img.bin", 2).returncode == 0
    boot(hw, "confirm")
    assert running(hw) == "ota_1"
    boot(hw, "start")
    assert running(hw) == "ota_1"


# -- network, identity, clock -------------------------------------------------------------------


def test_wifi_up_and_already_connected(hw):
    assert out(boot(hw, "wifi_up")) == [True, 1]


@pytest.mark.parametrize(
    "cfg,errno,text",
    [
        ({"wifi_ssid": "lab", "wifi_password": "wrong"}, 110, "not up in 300 ms (status 202)"),
        ({"wifi_ssid": "elsewhere"}, 110, "not up in 300 ms (status 201)"),
        ({}, 22, "wifi_ssid missing"),
    ],
)
def test_wifi_deadline_and_errors(hw, cfg, errno, text):
    res = out(boot(hw, "wifi", json.dumps(cfg)))
    assert res[0] == errno and text in res[1]
    assert "pw-lab" not in res[1] and "wrong" not in res[1]


def test_identity_and_clock(hw):
    assert out(boot(hw, "identity")) == [
        "246f28a1b2c3",
        "int",
    ]


# -- scenarios: the agent (`micropython -m agent`) on the fake ESP32 against the real server ---

from fakes.hwkit import Fleet, run_esp32_agent  # noqa: E402


@pytest.fixture
def fleet(server):
    f = Fleet(server, server.add_vendor())
    yield f
    f.close()


def record(hw):
    """The agent's record as the board stores it (the newest valid NVS generation)."""
    r = boot(hw, "record")
    return json.loads(r.stdout.strip().splitlines()[-1])


def no_secret(r, cik):
    assert cik not in r.stdout + r.stderr


def test_scenario_first_activation(fleet, tmp_path, hw):
    sn = fleet.sn("esp-a")
    cfg = fleet.config(tmp_path / "c.json", sn, "esp32")
    r = run_esp32_agent(hw, cfg)
    assert r.returncode == 0, r.stderr
    rec = record(hw)
    assert rec["state"] == "active" and len(rec["cik"]) == 40
    assert fleet.status(sn) == "activated"
    assert "wlan connect lab" in events(hw)
    no_secret(r, rec["cik"])
    assert run_esp32_agent(hw, cfg).returncode == 0  # restart with the stored CIK
    assert record(hw)["cik"] == rec["cik"] and record(hw)["n"]["act"] == 1


def test_scenario_update_applied_then_confirmed(fleet, tmp_path, hw):
    sn = fleet.sn("esp-u")
    image = app_image(40000, b"v2")
    fleet.content("firmware-2", image, "2")
    cfg = fleet.config(tmp_path / "c.json", sn, "esp32")
    r = run_esp32_agent(hw, cfg)
    assert r.returncode == 3, r.stderr  # applied, then machine.reset()
    assert "set_boot ota_1" in events(hw) and events(hw)[-1] == "reset"
    assert flash(hw, "ota_1")[: len(image)] == image
    r = run_esp32_agent(hw, cfg)  # the new image boots, reaches the server, confirms
    assert r.returncode == 0, r.stderr
    assert running(hw) == "ota_1" and "confirm ota_1" in events(hw)
    rec = record(hw)
    assert rec["inst"]["ver"] == "2" and rec["pend"] is None
    assert run_esp32_agent(hw, cfg).returncode == 0
    assert running(hw) == "ota_1"


def _apply_then_fail_once(fleet, tmp_path, hw, sn, **kw):
    fleet.content("firmware-2", app_image(30000, b"bad"), "2")
    cfg = fleet.config(tmp_path / "c.json", sn, "esp32", max_boots=1, **kw)
    assert run_esp32_agent(hw, cfg).returncode == 3
    # the new image comes up but never reaches the server: no confirmation
    dead = fleet.config(tmp_path / "dead.json", sn, "esp32", max_boots=1, **kw)
    dead.write_text(dead.read_text().replace(fleet.server.url, "http://127.0.0.1:9"))
    r = run_esp32_agent(hw, dead)
    assert r.returncode == 1 and running(hw) == "ota_1", r.stderr
    return cfg


def test_scenario_unhealthy_update_rolled_back_by_bootloader(fleet, tmp_path, hw):
    sn = fleet.sn("esp-r")
    cfg = _apply_then_fail_once(fleet, tmp_path, hw, sn)
    r = run_esp32_agent(hw, cfg)  # reset before confirmation: the old image boots
    assert r.returncode == 0, r.stderr
    assert running(hw) == "ota_0" and "rollback ota_1 aborted" in events(hw)
    rec = record(hw)
    assert rec["pend"] is None and rec["inst"]["ver"] == "1" and rec["n"]["rb"] == 1
    assert run_esp32_agent(hw, cfg).returncode == 0  # the bad image is not taken again
    assert running(hw) == "ota_0"


def test_scenario_unhealthy_update_rolled_back_by_agent(fleet, tmp_path):
    # a firmware without bootloader rollback: the agent's own boot count sends it back
    hw = make_hw(tmp_path, rollback=False)
    sn = fleet.sn("esp-n")
    cfg = _apply_then_fail_once(fleet, tmp_path, hw, sn)
    r = run_esp32_agent(hw, cfg)  # second unconfirmed start: slot_rollback() -> set_boot(ota_0)
    assert r.returncode == 0, r.stderr
    assert events(hw).count("set_boot ota_0") == 1
    assert run_esp32_agent(hw, cfg).returncode == 0
    assert running(hw) == "ota_0" and record(hw)["inst"]["ver"] == "1"


def test_scenario_power_cut_during_storage_saves(fleet, tmp_path):
    """A cut at each NVS commit of the first activation, in turn: after any cut the record is
    the old or the new one, and restarts (with the operator's regenerate when the CIK was
    lost: `enable=true` again, POST /provision/manage/model/<model>/<sn>) end active."""
    k = 0
    while True:
        k += 1
        assert k < 20
        hw = make_hw(tmp_path / f"k{k}")
        sn = fleet.sn(f"esp-cut{k}")
        cfg = fleet.config(tmp_path / f"c{k}.json", sn, "esp32")
        arm(hw, k, "before", match="nvs commit r")
        r = run_esp32_agent(hw, cfg)
        if r.returncode != 137:
            assert r.returncode == 0, r.stderr
            break
        rec = record(hw)
        assert rec is None or rec["state"] in ("unprov", "activating", "active")
        for _ in range(3):
            r = run_esp32_agent(hw, cfg)
            if r.returncode == 4:  # activated, CIK not stored: regenerate
                fleet.regenerate(sn)
                continue
            break
        assert r.returncode == 0, r.stderr
        assert record(hw)["state"] == "active"
    assert k > 3  # several saves were cut


def test_scenario_resume_after_reset_mid_download(fleet, tmp_path, hw):
    sn = fleet.sn("esp-d")
    image = app_image(60000, b"resume")
    fleet.content("firmware-3", image, "3")
    cfg = fleet.config(tmp_path / "c.json", sn, "esp32")
    arm(hw, 41, "torn", match="write ota_1")  # the third 16 KiB range, 1 KiB writes
    r = run_esp32_agent(hw, cfg)
    assert r.returncode == 137, r.stderr
    r = run_esp32_agent(hw, cfg)
    assert r.returncode == 3, r.stderr
    resumed = [ln for ln in r.stderr.splitlines() if "resuming firmware-3 at" in ln]
    assert resumed and int(resumed[0].split(" at ")[1].split()[0]) >= 16384
    assert flash(hw, "ota_1")[: len(image)] == image
    assert run_esp32_agent(hw, cfg).returncode == 0
    assert running(hw) == "ota_1" and record(hw)["inst"]["ver"] == "3"


def test_wifi_connect_already_in_progress(hw):
    # boot.py (or an earlier attempt) left the driver connecting: connect() alone would raise
    # "Wifi Internal Error" on an ESP32; the board stops the attempt first
    assert out(boot(hw, "wifi_connect_in_progress")) == ["Wifi Internal Error", True]
