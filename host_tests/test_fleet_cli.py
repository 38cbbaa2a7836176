"""`exoprov fleet` against the real server: output formats, exit codes, every README command."""

import csv
import hashlib
import io
import itertools
import json
import os

import pytest
from conftest import exoprov
from exoprov.fleet.client import Client, parse_meta

_n = itertools.count(1)
# what devices told the server (test_fleet_status_cli.py checks the values)
STATUS_TOLD = ["VERSION", "LAST_SEEN", "STATE", "ERROR"]


@pytest.fixture
def env(server, vendor, tmp_path):
    """The environment the README sets: server, vendor CIK, owner rid; HOME without config."""
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if not k.startswith("EXOPROV_")}
    e.update(
        HOME=str(home),
        EXOPROV_SERVER=server.url,
        EXOPROV_CIK=vendor["cik"],
        EXOPROV_OWNER=vendor["rid"],
    )
    return e


@pytest.fixture
def client(server, vendor):
    with Client(server.url, cik=vendor["cik"]) as c:
        yield c


class Run:
    """Runs `exoprov fleet ...` and checks no credential shows up in any output."""

    def __init__(self, env, secrets):
        self.env = env
        self.secrets = secrets

    def __call__(self, *args, rc=0, env=None):
        r = exoprov("fleet", *args, check=False, env=env or self.env)
        for s in self.secrets:
            assert s not in r.stdout and s not in r.stderr, "a credential was printed"
        assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
        if rc:
            lines = r.stderr.strip().splitlines()
            assert lines[-1].startswith("exoprov: ")
            assert sum(ln.startswith("exoprov: ") for ln in lines) == 1
        return r


@pytest.fixture
def fleet(env, vendor):
    return Run(env, [vendor["cik"]])


def _model(fleet, vendor):
    name = f"sensor-v{next(_n)}"
    fleet("model", "create", name, "--rid", vendor["rid"])
    return name


def _table(text):
    lines = text.strip().splitlines()
    head = lines[0].split()
    return head, [ln.split() for ln in lines[1:]]


# -- the README's factory line ----------------------------------------------------------------


def test_readme_factory_line(fleet, client, vendor, tmp_path):
    model = _model(fleet, vendor)
    r = fleet(
        "sn", "add", model, "--range", "00001000-00001999", "--format", "base10", "--length", "8"
    )
    assert (
        r.stdout == f"whitelisted 1000 serial numbers (00001000-00001999, base10) in model "
        f"{model}\n"
    )
    line3 = tmp_path / "line3.csv"
    line3.write_text("sn,extra\n00002000,line 3 batch 7\n00002001,line 3 batch 7\n")
    r = fleet("sn", "add", model, "--csv", str(line3))
    assert r.stdout == f"added 2 serial numbers from {line3} to model {model}\n"
    r = fleet("sn", "enable", model, "00001000", "00001001", "00002000")
    head, rows = _table(r.stdout)
    assert head == ["SN", "RID"] and [row[0] for row in rows] == [
        "00001000",
        "00001001",
        "00002000",
    ]
    assert all(len(row[1]) == 40 for row in rows)
    client.activate(vendor["vendor"], model, "00001000")

    r = fleet("sn", "status", model)
    head, rows = _table(r.stdout)
    assert head == ["SN", "STATUS", "RID", "LAST_ACTIVATION", "RESULT", *STATUS_TOLD]
    by_sn = {row[0]: row for row in rows}
    assert by_sn["00001000"][1] == "activated" and by_sn["00001000"][4] == "activated"
    assert by_sn["00001000"][3].endswith("Z")
    assert by_sn["00001001"][1] == "notactivated" and len(by_sn["00001001"]) == 3
    assert by_sn["00002001"][1] == "-"

    r = fleet("sn", "status", model, "--csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {row["sn"]: row["status"] for row in rows}["00001000"] == "activated"
    assert set(rows[0]) == {"sn", "status", "rid", "last_activation", "result"} | {
        h.lower() for h in STATUS_TOLD
    }
    r = fleet("sn", "status", model, "--json")
    assert {o["sn"] for o in json.loads(r.stdout)} == {
        "00001000",
        "00001001",
        "00002000",
        "00002001",
    }


def test_readme_firmware_upload_info_download(fleet, client, vendor, tmp_path):
    model = _model(fleet, vendor)
    app = tmp_path / "app.bin"
    data = os.urandom(200_000)
    app.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    r = fleet("content", "upload", model, "firmware-1.4.0", str(app), "--version", "1.4.0")
    assert r.stdout == (
        f"uploaded {app} to content firmware-1.4.0 of model {model} (200000 "
        f"bytes, version 1.4.0, sha256 {digest})\n"
    )
    assert r.stderr == ""  # no progress bar when stderr is not a terminal
    r = fleet(
        "content", "upload", model, "firmware-1.4.0", str(app), "--version", "1.4.0", "--progress"
    )
    bar = r.stderr.replace("\r", "\n").splitlines()  # one line redrawn with \r on a terminal
    assert (
        bar[-1] == "upload firmware-1.4.0 [##############################] 100% 195.3KiB/195.3KiB"
    )
    assert sum("100%" in ln for ln in bar) == 1 and len(bar) > 3
    r = fleet("content", "info", model, "firmware-1.4.0")
    head, rows = _table(r.stdout)
    assert head == ["ID", "TYPE", "SIZE", "UPDATED", "META", "PROTECTED"]
    assert rows[0][2] == "200000" and rows[0][5] == "false"
    assert parse_meta(rows[0][4]) == {"sha256": digest, "version": "1.4.0"}
    out = tmp_path / "check.bin"
    r = fleet("content", "download", model, "firmware-1.4.0", "-o", str(out))
    assert out.read_bytes() == data
    assert r.stdout.endswith("(200000 bytes, sha256 checked)\n")
    assert r.stderr == ""  # no progress bar when stderr is not a terminal


def test_upload_again_rewrites_the_meta_and_keeps_group_membership(
    fleet, client, vendor, tmp_path
):
    model = _model(fleet, vendor)
    f = tmp_path / "fw"
    f.write_bytes(b"one")
    fleet("content", "upload", model, "fw", str(f), "--version", "1", "--protected")
    client.group_create(model, "beta")
    client.group_add(model, "beta", "content", ["fw"], expire=2000000000, meta="wave 1")
    f.write_bytes(b"two!")
    fleet("content", "upload", model, "fw", str(f), "--version", "2")
    info = client.content_info(model, "fw")
    assert parse_meta(info.meta) == {"sha256": hashlib.sha256(b"two!").hexdigest(), "version": "2"}
    assert info.protected is True and client.content_read(model, "fw") == b"two!"
    (m,) = client.group_members(model, "beta", type="content")
    assert (m.id, int(m.expire), m.meta) == ("fw", 2000000000, "wave 1")


def test_download_refuses_a_bad_digest(fleet, client, vendor, tmp_path):
    model = _model(fleet, vendor)
    client.content_create(model, "fw", meta="sha256=" + "0" * 64)
    client.content_upload(model, "fw", b"tampered")
    r = fleet("content", "download", model, "fw", "-o", str(tmp_path / "x"), rc=1)
    assert r.stderr.strip().endswith("sha256 of the download does not match its meta")
    assert not (tmp_path / "x").exists()


def test_readme_devices_in_the_field(fleet, client, vendor):
    model = _model(fleet, vendor)
    fleet("sn", "add", model, "00001000", "00001001")
    fleet("sn", "enable", model, "00001000", "00001001")
    client.activate(vendor["vendor"], model, "00001000")
    r = fleet("sn", "regenerate", model, "00001000")
    assert _table(r.stdout)[1] == [["00001000", "regenerated"]]
    assert client.sn_info(model, "00001000").status == "notactivated"
    r = fleet("sn", "disable", model, "00001001")
    assert _table(r.stdout)[1] == [["00001001", "disabled"]]
    r = fleet("sn", "log", model, "00001000")
    head, rows = _table(r.stdout)
    assert head == ["TIME", "FROM", "EVENT"] and rows[0][2] == "activated"
    r = fleet("sn", "info", model, "00001001")
    assert _table(r.stdout)[1][0][:2] == ["00001001", "expired"]
    fleet("sn", "remap", model, "00001002", "--from", "00001001", rc=1)  # not whitelisted
    fleet("sn", "add", model, "00001002")
    r = fleet("sn", "remap", model, "00001002", "--from", "00001001")
    assert "moved the client of 00001001 to 00001002" in r.stdout


def test_sn_list_ranges_and_every_removal(fleet, vendor, tmp_path):
    model = _model(fleet, vendor)
    fleet("sn", "add", model, "A1", "--extra", "x")
    fleet("sn", "add", model, "A2", "A3", "A4", "A5")
    r = fleet("sn", "list", model, "--json")
    assert [o["sn"] for o in json.loads(r.stdout)] == ["A1", "A2", "A3", "A4", "A5"]
    assert json.loads(r.stdout)[0]["extra"] == "x"
    r = fleet("sn", "list", model, "--limit", "5", "--offset", "3", "--csv")
    assert r.stdout.splitlines()[1:] == ["A4,,,", "A5,,,"]
    fleet("sn", "add", model, "--range", "0a-0f", "--format", "base16", "--casing", "lower")
    r = fleet("sn", "ranges", model)
    assert _table(r.stdout)[1] == [["base16", "2", "lower", "10", "15"]]
    fleet("sn", "remove", model, "--range", "0a-0f", "--format", "base16", "--casing", "lower")
    assert fleet("sn", "ranges", model).stdout == "(none)\n"
    gone = tmp_path / "gone.csv"
    gone.write_text("A1\nA2\n")
    fleet("sn", "remove", model, "--csv", str(gone))
    fleet("sn", "remove", model, "A3")
    fleet("sn", "remove", model, "A4", "A5")
    assert fleet("sn", "list", model).stdout == "(none)\n"


def test_many_serial_numbers_are_sent_in_batches(fleet, client, vendor, tmp_path):
    model = _model(fleet, vendor)
    big = tmp_path / "big.csv"
    big.write_text("".join(f"{i:012d},extra data for unit {i}\n" for i in range(3000)))
    assert big.stat().st_size > 64 * 1024  # over the server's body cap: needs batches
    r = fleet("sn", "add", model, "--csv", str(big))
    assert r.stdout.startswith("added 3000 serial numbers")
    assert len(client.sn_all(model, status=False)) == 3000


def test_models_groups_shares_tokens_vendor(fleet, server, client, vendor, env):
    model = _model(fleet, vendor)
    fleet("model", "create", model + "-c", "--code", "tpl", "--option", "noaliases")
    head, rows = _table(fleet("model", "list").stdout)
    assert head == ["MODEL"] and [model] in rows and [model + "-c"] in rows
    r = fleet("model", "info", model + "-c", "--json")
    assert json.loads(r.stdout) == [
        {"model": model + "-c", "rid": "", "code": "tpl", "options": "noaliases"}
    ]
    fleet("model", "update", model + "-c", "--rid", vendor["rid"])
    fleet("model", "delete", model + "-c")

    fleet("group", "create", model, "beta", "--meta", "wave 1")
    fleet("group", "create", model, "all")
    fleet("group", "add", model, "beta", "--type", "sn", "00000001", "00000002")
    members = tmp_path_csv(env, "type,id,expire,meta\ncontent,fw,0,\ngroup,all,,nested\n")
    fleet("group", "add", model, "beta", "--csv", members)
    assert _table(fleet("group", "info", model, "beta").stdout)[1] == [["beta", "wave", "1", "4"]]
    r = fleet("group", "members", model, "beta", "--type", "sn", "--csv")
    assert r.stdout.splitlines()[1:] == [
        "sn,00000001,0,",
        "sn,00000002,0,",
    ] or r.stdout.splitlines()[1:] == ["sn,00000001,,", "sn,00000002,,"]
    assert _table(fleet("group", "groups", model, "all").stdout)[1] == [["beta"]]
    assert ["beta", "wave", "1"] in _table(fleet("group", "list", model).stdout)[1]
    fleet("group", "remove", model, "beta", "--type", "sn", "00000001")
    fleet("group", "remove", model, "beta", "--csv", tmp_path_csv(env, "content,fw\n"))
    assert len(json.loads(fleet("group", "members", model, "beta", "--json").stdout)) == 2
    fleet("group", "delete", model, "beta")

    other = server.add_vendor()
    fleet("share", "add", model, other["vendor"])
    assert _table(fleet("share", "list", model).stdout)[1] == [[other["vendor"]]]
    assert _table(fleet("share", "check", model, other["vendor"]).stdout)[1][0][2] == "yes"
    fleet("sn", "add", model, "S1")
    oenv = {**env, "EXOPROV_CIK": other["cik"], "EXOPROV_OWNER": other["rid"]}
    ofleet = Run(oenv, [other["cik"], vendor["cik"]])
    r = ofleet("model", "list", "--shared")
    assert [vendor["vendor"], model] in _table(r.stdout)[1]
    ofleet("sn", "enable", model, "S1", "--vendor", vendor["vendor"])
    r = ofleet("sn", "list", model, "--vendor", vendor["vendor"], "--json")
    assert [o["sn"] for o in json.loads(r.stdout)] == ["S1"]
    ofleet("sn", "add", model, "S2", "--vendor", vendor["vendor"], rc=1)
    fleet("share", "remove", model, other["vendor"])
    assert _table(fleet("share", "check", model, other["vendor"]).stdout)[1][0][2] == "no"

    r = fleet("token", "create", "ci", "--json")
    (tok,) = json.loads(r.stdout)
    assert tok["id"] == "ci" and len(tok["token"]) > 10
    assert _table(fleet("token", "list").stdout)[1] == [["ci"]]
    assert json.loads(fleet("token", "show", "ci", "--json").stdout)[0]["token"] == tok["token"]
    tenv = {**env, "EXOPROV_TOKEN": tok["token"]}
    del tenv["EXOPROV_CIK"]
    Run(tenv, [tok["token"]])("model", "list")
    fleet("token", "delete", "ci")
    r = Run(tenv, [tok["token"]])("model", "list", rc=1)
    assert r.stderr.strip() == "exoprov: list models: 401 unknown credentials"
    assert _table(fleet("vendor", "show").stdout)[1] == [[vendor["vendor"]]]


def tmp_path_csv(env, text):
    path = os.path.join(env["HOME"], f"in{next(_n)}.csv")
    with open(path, "w") as f:
        f.write(text)
    return path


def test_register_and_unregister(server, env):
    v = server.add_vendor()
    e = {**env, "EXOPROV_CIK": v["cik"]}
    run = Run(e, [v["cik"]])
    run("vendor", "unregister", v["vendor"])
    run("vendor", "register", v["vendor"] + "x")
    assert _table(run("vendor", "show").stdout)[1] == [[v["vendor"] + "x"]]


# -- errors: one line, the status, the reason, exit 1 (2 for usage) ---------------------------


def test_error_lines_for_each_status(fleet, server, env, vendor, make_server, tmp_path):
    model = _model(fleet, vendor)
    r = fleet("model", "info", "nope", rc=1)
    assert r.stderr == "exoprov: read model nope: 404 no such model\n"
    r = fleet("model", "create", model, "--rid", vendor["rid"], rc=1)
    assert r.stderr.startswith(f"exoprov: create model {model}: 409 ")
    r = fleet("sn", "add", model, "bad,sn", rc=1)
    assert r.stderr.startswith(f"exoprov: add serial numbers to model {model}: 400 ")
    other = server.add_vendor()
    r = Run({**env, "EXOPROV_CIK": other["cik"]}, [other["cik"]])("sn", "list", model, rc=1)
    assert r.stderr.startswith(f"exoprov: list serial numbers of model {model}: 403 ")
    r = fleet("model", "list", env={**env, "EXOPROV_CIK": "x" * 40}, rc=1)
    assert r.stderr == "exoprov: list models: 401 unknown credentials\n"
    r = fleet("sn", "enable", model, "00000001", rc=1)  # not whitelisted
    assert r.stderr == f"exoprov: enable 00000001 of model {model}: 404 no such serial number\n"

    small = make_server("--max-content-bytes", "100")
    sv = small.add_vendor()
    senv = {**env, "EXOPROV_SERVER": small.url, "EXOPROV_CIK": sv["cik"]}
    srun = Run(senv, [sv["cik"]])
    srun("model", "create", "m", "--rid", sv["rid"])
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1000)
    r = srun("content", "upload", "m", "fw", str(big), rc=1)
    assert r.stderr.startswith(f"exoprov: upload {big} to content fw of model m: 413 ")


def test_batch_failure_prints_what_succeeded_then_one_error(fleet, vendor):
    model = _model(fleet, vendor)
    fleet("sn", "add", model, "E1", "E2")
    r = fleet("sn", "enable", model, "E1", "E9", "E2", rc=1)
    assert _table(r.stdout)[1][0][0] == "E1" and len(_table(r.stdout)[1]) == 1
    assert r.stderr == f"exoprov: enable E9 of model {model}: 404 no such serial number\n"


def test_connection_refused(fleet, env):
    r = fleet("model", "list", env={**env, "EXOPROV_SERVER": "http://127.0.0.1:9"}, rc=1)
    assert r.stderr == "exoprov: list models: cannot connect to http://127.0.0.1:9\n"


def test_usage_errors_exit_2(fleet, env, tmp_path):
    r = fleet("sn", "enable", rc=2)
    assert "the following arguments are required: model, sn" in r.stderr
    r = fleet(rc=2)
    assert r.stderr.endswith("exoprov: fleet: a command family is needed\n")
    r = fleet("sn", "add", "m", rc=2)
    assert r.stderr == "exoprov: sn add: give serial numbers, --range or --csv (one of them)\n"
    r = fleet("sn", "add", "m", "--range", "9-1", rc=2)
    assert r.stderr == "exoprov: range '9-1' ends before it starts\n"
    noenv = {k: v for k, v in env.items() if k not in ("EXOPROV_CIK", "EXOPROV_OWNER")}
    r = fleet("model", "list", env=noenv, rc=2)
    assert r.stderr.startswith("exoprov: no credentials: give --cik or --token")
    r = fleet("sn", "enable", "m", "1", env={**env, "EXOPROV_OWNER": ""}, rc=2)
    assert r.stderr.startswith("exoprov: sn enable needs --owner RID")
    assert fleet("--help").stdout.startswith("usage: exoprov fleet")


def test_config_file_and_flags(fleet, server, vendor, env, tmp_path):
    cfgdir = tmp_path / "home" / ".config" / "exoprov"
    cfgdir.mkdir(parents=True)
    cfg = cfgdir / "fleet.json"
    cfg.write_text(json.dumps({"server": server.url, "cik": vendor["cik"]}))
    os.chmod(cfg, 0o644)
    bare = {k: v for k, v in env.items() if not k.startswith("EXOPROV_")}
    r = fleet("model", "list", env=bare, rc=2)
    assert (
        r.stderr == f"exoprov: config file {cfg} is mode 0644; it holds credentials: "
        "chmod 600 it\n"
    )
    os.chmod(cfg, 0o600)
    fleet("model", "list", env=bare)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"server": "http://127.0.0.1:9", "cik": "y" * 40}))
    os.chmod(other, 0o600)
    fleet("model", "list", "--config", str(other), env=bare, rc=1)  # nothing on port 9
    fleet(
        "model",
        "list",
        "--config",
        str(other),
        "--server",
        server.url,
        "--cik",
        vendor["cik"],
        env=bare,
    )
    fleet("--server", server.url, "--json", "model", "list", env=bare)  # options first works


def test_csv_from_stdin(fleet, client, vendor, env):
    model = _model(fleet, vendor)
    r = exoprov(
        "fleet",
        "sn",
        "add",
        model,
        "--csv",
        "-",
        check=False,
        env=env,
        input="00000001,from stdin\n00000002\n",
    )
    assert r.returncode == 0, r.stderr
    assert [(e.sn, e.extra) for e in client.sn_all(model)] == [
        ("00000001", "from stdin"),
        ("00000002", ""),
    ]
