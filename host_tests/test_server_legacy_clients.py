"""The request forms of the public Provision API clients of the time (pyonep, goonep,
exoline, the provision examples), which vendors' scripts still send.

Each test sends, byte for byte where it matters, what one library function sent: the
path, the query or body encoding, the Content-Type (or its absence) and the credential
header. The docstrings name the function and where to read it (repository + path):

- pyonep: github.com/exosite-labs/pyonep, pyonep/provision.py. `Provision._request`
  puts GET parameters in the query and everything else in the body (a str given to
  `requests`, so no Content-Type is added), sets `Content-Type:
  application/x-www-form-urlencoded; charset=utf-8` on POST only (extra headers win),
  and the key in `X-Exosite-CIK` (manage_by_cik, the default) or `X-Exosite-Token`.
- exoline: github.com/exosite/exoline, exoline/plugins/provision.py (pyonep with
  manage_by_cik=False, so the vendor token in `X-Exosite-Token`, plus raw `_request`s).
- provision_examples: github.com/exosite-garage/provision_examples, provision_manager.py
  and provision_device.py (hand-written HTTP/1.1 over a socket), driven by provision_test.py.
- goonep / javaonep (github.com/exosite-labs/goonep provision.go, exosite-labs/javaonep
  Provision.java): the same forms as pyonep, list values written as a literal `sn[]=`.

The tests need neither library: the forms are rebuilt here with `urlencode` and `requests`.
"""

import socket
from urllib.parse import urlencode

import pytest
import requests
from serverkit import HEX40, add_content, add_sn, enable, lines, new_model

M = "/provision/manage/model/"
C = "/provision/manage/content/"
FORM = "application/x-www-form-urlencoded; charset=utf-8"
ACCEPT = "text/plain, text/csv, application/x-www-form-urlencoded"


def pyonep(server, method, path, key, data="", key_is_cik=True, extra=None):
    """One request as pyonep's Provision._request sends it (requests era, 0.12+)."""
    url = server.url + path
    body = None
    if method == "GET":
        if data:
            url += "?" + data
    else:
        body = data
    headers = {"X-Exosite-CIK" if key_is_cik else "X-Exosite-Token": key}
    if method == "POST":
        headers["Content-Type"] = FORM
    headers["Accept"] = ACCEPT
    headers.update(extra or {})
    return requests.request(method, url, data=body, headers=headers, timeout=30)


def exoline(server, method, path, token, data="", extra=None):
    """exoline calls pyonep with manage_by_cik=False: the vendor token in X-Exosite-Token."""
    return pyonep(server, method, path, token, data, key_is_cik=False, extra=extra)


def raw(server, lines_, body=b""):
    """A hand-written HTTP/1.1 request (provision_examples); returns (status, body)."""
    head = "".join(line + "\r\n" for line in lines_) + "\r\n"
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(head.encode() + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1].decode()


@pytest.fixture
def token(vclient):
    r = vclient.post("/provision/admin/auth/", data={"id": "legacy"})
    assert r.status_code == 200, r.text
    return r.text


# -- serial numbers ---------------------------------------------------------------------------


def test_pyonep_serialnumber_add(server, vendor, vclient):
    """pyonep Provision.serialnumber_add (exosite-labs/pyonep, pyonep/provision.py):
    POST model/<m>/ `add=true&sn=<sn>&extra=<extra>`."""
    model = new_model(vclient)
    data = urlencode({"add": "true", "sn": "a1", "extra": "x y"})
    r = pyonep(server, "POST", M + model + "/", vendor["cik"], data)
    assert r.status_code == 205, r.text
    assert lines(vclient.get(M + model + "/")) == ["a1,,x y"]


def test_pyonep_serialnumber_add_batch(server, vendor, vclient):
    """pyonep Provision.serialnumber_add_batch (exosite-labs/pyonep, pyonep/provision.py):
    `add=true&sn%5B%5D=A&sn%5B%5D=B` (urlencode with doseq escapes the brackets)."""
    model = new_model(vclient)
    data = urlencode({"add": "true", "sn[]": ["b1", "b2"]}, doseq=True)
    assert "sn%5B%5D=b1" in data
    assert pyonep(server, "POST", M + model + "/", vendor["cik"], data).status_code == 205
    assert [x.split(",")[0] for x in lines(vclient.get(M + model + "/"))] == ["b1", "b2"]


def test_goonep_serialnumber_add_batch_literal_brackets(server, vendor, vclient):
    """goonep Serialnumber_add_batch (exosite-labs/goonep, provision.go) and javaonep
    serialnumber_add_batch (exosite-labs/javaonep, Provision.java): `add=true&sn[]=A&sn[]=B`
    written by hand, brackets unescaped."""
    model = new_model(vclient)
    r = pyonep(server, "POST", M + model + "/", vendor["cik"], "add=true&sn[]=g1&sn[]=g2")
    assert r.status_code == 205, r.text
    assert [x.split(",")[0] for x in lines(vclient.get(M + model + "/"))] == ["g1", "g2"]


def test_pyonep_serialnumber_remove_batch(server, vendor, vclient):
    """pyonep Provision.serialnumber_remove_batch (exosite-labs/pyonep, pyonep/provision.py),
    used by `exo sn delete <model> <sn>...` (exosite/exoline, exoline/plugins/provision.py):
    POST model/<m>/ `remove=true&sn%5B%5D=A&sn%5B%5D=B`. The server once read it as an add
    and answered 409; it removes them."""
    model = new_model(vclient)
    for sn in ("r1", "r2", "r3"):
        add_sn(vclient, model, sn)
    data = urlencode({"remove": "true", "sn[]": ["r1", "r2"]}, doseq=True)
    r = pyonep(server, "POST", M + model + "/", vendor["cik"], data)
    assert r.status_code == 205, r.text
    assert [x.split(",")[0] for x in lines(vclient.get(M + model + "/"))] == ["r3"]
    r = pyonep(server, "POST", M + model + "/", vendor["cik"], data)
    assert r.status_code == 404  # nothing left to remove: never turned into an add
    assert [x.split(",")[0] for x in lines(vclient.get(M + model + "/"))] == ["r3"]


def test_goonep_serialnumber_remove_batch_literal_brackets(server, vendor, vclient):
    """goonep Serialnumber_remove_batch (exosite-labs/goonep, provision.go):
    `remove=true&sn[]=A&sn[]=B` written by hand."""
    model = new_model(vclient)
    for sn in ("g1", "g2"):
        add_sn(vclient, model, sn)
    r = pyonep(server, "POST", M + model + "/", vendor["cik"], "remove=true&sn[]=g1&sn[]=g2")
    assert r.status_code == 205, r.text
    assert vclient.get(M + model + "/").text == ""


def test_provision_examples_remove_single(server, vendor, vclient, token):
    """provision_examples ProvisionManager.provisionManageModelModelSNPOST's clean-up
    (exosite-garage/provision_examples, provision_manager.py): `remove=true&sn=<sn>`
    with an explicit form Content-Type, over a raw socket."""
    model = new_model(vclient)
    add_sn(vclient, model, "one")
    body = b"remove=true&sn=one"
    status, _ = raw(
        server,
        [
            f"POST {M}{model}/ HTTP/1.1",
            "Host: m2.exosite.com",
            f"X-Exosite-Token: {token}",
            f"Content-Type: {FORM}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ],
        body,
    )
    assert status == 205
    assert vclient.get(M + model + "/").text == ""


def test_pyonep_serialnumber_add_batch_csv(server, vendor, vclient):
    """pyonep Provision.serialnumber_add_batch_csv (exosite-labs/pyonep, pyonep/provision.py)
    and `exo sn add --file` (exosite/exoline, exoline/plugins/provision.py): a `text/csv;
    charset=utf-8` body of `<sn>,<extra>` rows as csv.writer writes them (CRLF)."""
    model = new_model(vclient)
    body = "001x,Extra Info1\r\n002x,Extra Info2\r\n"
    r = pyonep(
        server,
        "POST",
        M + model + "/",
        vendor["cik"],
        body,
        extra={"Content-Type": "text/csv; charset=utf-8"},
    )
    assert r.status_code == 205, r.text
    assert lines(vclient.get(M + model + "/")) == ["001x,,Extra Info1", "002x,,Extra Info2"]


def test_exoline_sn_delete_file(server, vendor, vclient, token):
    """`exo sn delete <model> --file=<f>` (exosite/exoline, exoline/plugins/provision.py):
    DELETE model/<m>/ with a `text/csv; charset=utf-8` body, vendor token."""
    model = new_model(vclient)
    for sn in ("d1", "d2", "d3"):
        add_sn(vclient, model, sn)
    r = exoline(
        server,
        "DELETE",
        M + model + "/",
        token,
        "d1\nd3\n",
        {"Content-Type": "text/csv; charset=utf-8"},
    )
    assert r.status_code == 205, r.text
    assert [x.split(",")[0] for x in lines(vclient.get(M + model + "/"))] == ["d2"]


def test_pyonep_serialnumber_list_with_status(server, vendor, vclient):
    """pyonep Provision.serialnumber_list(status=True) (exosite-labs/pyonep,
    pyonep/provision.py): GET model/<m>/?offset=0&limit=1000&status=true; without status,
    the three columns `exo sn list` splits (exosite/exoline, exoline/plugins/provision.py)."""
    model = new_model(vclient)
    add_sn(vclient, model, "s1", "ex")
    data = urlencode({"offset": 0, "limit": 1000, "status": "true"})
    r = pyonep(server, "GET", M + model + "/", vendor["cik"], data)
    assert r.status_code == 200 and lines(r) == ["s1,,,ex"]
    r = pyonep(
        server, "GET", M + model + "/", vendor["cik"], urlencode({"offset": "0", "limit": "1000"})
    )
    assert lines(r) == ["s1,,ex"]


def test_pyonep_serialnumber_enable_disable_reenable_remap_info(server, vendor, vclient):
    """pyonep Provision.serialnumber_enable / _disable / _reenable / _remap / _info
    (exosite-labs/pyonep, pyonep/provision.py): POST model/<m>/<sn> with `enable=true&
    owner=<rid>`, `disable=true`, `enable=true`, `enable=true&oldsn=<old>`; GET model/<m>/<sn>
    and `?show=log` (serialnumber_info(actvtn_log=True))."""
    model = new_model(vclient)
    add_sn(vclient, model, "e1")
    add_sn(vclient, model, "e2")
    key, path = vendor["cik"], M + model + "/"
    r = pyonep(
        server, "POST", path + "e1", key, urlencode({"enable": "true", "owner": vendor["rid"]})
    )
    assert r.status_code == 200 and HEX40.fullmatch(r.text)
    assert pyonep(server, "GET", path + "e1", key).text.startswith("notactivated,")
    assert (
        pyonep(server, "POST", path + "e1", key, urlencode({"disable": "true"})).status_code == 205
    )
    assert pyonep(server, "GET", path + "e1", key).text.startswith("expired,")
    assert (
        pyonep(server, "POST", path + "e1", key, urlencode({"enable": "true"})).status_code == 205
    )
    assert pyonep(server, "GET", path + "e1", key).text.startswith("notactivated,")
    data = urlencode({"enable": "true", "oldsn": "e1"})
    assert pyonep(server, "POST", path + "e2", key, data).status_code == 205
    assert pyonep(server, "GET", path + "e2", key).text.startswith("notactivated,")
    assert pyonep(server, "GET", path + "e2", key, "show=log").status_code == 204


def test_pyonep_serialnumber_remove(server, vendor, vclient):
    """pyonep Provision.serialnumber_remove (exosite-labs/pyonep, pyonep/provision.py):
    DELETE model/<m>/<sn> with an empty body and no Content-Type."""
    model = new_model(vclient)
    add_sn(vclient, model, "x1")
    assert pyonep(server, "DELETE", M + model + "/x1", vendor["cik"]).status_code == 205
    assert vclient.get(M + model + "/").text == ""


def test_exoline_sn_ranges_addrange_delrange(server, vendor, vclient, token):
    """`exo sn addrange` / `delrange` / `ranges` (exosite/exoline,
    exoline/plugins/provision.py): POST and DELETE model/<m>/ with `application/javascript;
    charset=utf-8` `{"ranges": [{"format", "length": null, "casing": null|"upper", "first",
    "last"}]}` (JSON null where the option is not given), GET model/<m>/?show=ranges."""
    import json

    model = new_model(vclient)
    js = {"Content-Type": "application/javascript; charset=utf-8"}
    dec = {"format": "base10", "length": None, "casing": None, "first": 10, "last": 20}
    mac = {"format": "mac:48", "length": None, "casing": "upper", "first": 0, "last": 255}
    for spec in (dec, mac):
        body = json.dumps({"ranges": [spec]})
        assert exoline(server, "POST", M + model + "/", token, body, js).status_code == 205
    r = exoline(server, "GET", M + model + "/?show=ranges", token, extra={"Accept": "*"})
    assert r.status_code == 200 and len(r.json()["ranges"]) == 2
    assert vclient.get(M + model + "/15").status_code == 204
    assert vclient.get(M + model + "/00:00:00:00:00:0A").status_code == 204
    body = json.dumps({"ranges": [dec]})
    assert exoline(server, "DELETE", M + model + "/", token, body, js).status_code == 205
    assert vclient.get(M + model + "/15").status_code == 404


def test_exoline_sn_log(server, vendor, vclient, token):
    """`exo sn log` (exosite/exoline, exoline/plugins/provision.py): GET model/<m>/<sn>?show=log
    with the vendor token."""
    model = new_model(vclient)
    add_sn(vclient, model, "l1")
    enable(vclient, model, "l1", vendor["rid"])
    assert (
        pyonep(
            server,
            "POST",
            "/provision/activate",
            "",
            f"vendor={vendor['vendor']}&model={model}&sn=l1",
        ).status_code
        == 200
    )
    r = exoline(server, "GET", M + model + "/l1?show=log", token)
    assert r.status_code == 200 and lines(r)[0].endswith(",activated")


# -- activation -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Exosite-CIK", "X-Exosite-Token"])
def test_pyonep_serialnumber_activate_empty_key(server, vendor, vclient, header):
    """pyonep Provision.serialnumber_activate (exosite-labs/pyonep, pyonep/provision.py) sends
    the key '' in `X-Exosite-CIK` (manage_by_cik, the default) or in `X-Exosite-Token`
    (`exo sn activate`, exosite/exoline): an empty credential header on a procedure that
    takes none."""
    model = new_model(vclient)
    add_sn(vclient, model, "a1")
    enable(vclient, model, "a1", vendor["rid"])
    data = urlencode({"vendor": vendor["vendor"], "model": model, "sn": "a1"})
    r = pyonep(
        server, "POST", "/provision/activate", "", data, key_is_cik=header == "X-Exosite-CIK"
    )
    assert r.status_code == 200 and HEX40.fullmatch(r.text)
    r = pyonep(
        server, "POST", "/provision/activate", "", data, key_is_cik=header == "X-Exosite-CIK"
    )
    assert r.status_code == 409


def test_provision_examples_activate_raw(server, vendor, vclient):
    """provision_examples ProvisionDevice.provisionActivatePOST (exosite-garage/
    provision_examples, provision_device.py): no credential header at all, raw socket."""
    model = new_model(vclient)
    add_sn(vclient, model, "p1")
    enable(vclient, model, "p1", vendor["rid"])
    body = f"vendor={vendor['vendor']}&model={model}&sn=p1".encode()
    status, text = raw(
        server,
        [
            "POST /provision/activate HTTP/1.1",
            "Host: m2.exosite.com",
            f"Content-Type: {FORM}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ],
        body,
    )
    assert status == 200 and HEX40.fullmatch(text)


# -- models -----------------------------------------------------------------------------------


def test_pyonep_model_create_list_info(server, vendor, vclient):
    """pyonep Provision.model_create / model_list / model_info (exosite-labs/pyonep,
    pyonep/provision.py): `model=<m>&rid=<rid>&options%5B%5D=noaliases`, or `code=` with
    manage_by_sharecode; the info body parsed with parse_qs by `exo model list --long`."""
    key = vendor["cik"]
    data = urlencode(
        {"model": "pm1", "rid": vendor["rid"], "options[]": ["noaliases"]}, doseq=True
    )
    assert pyonep(server, "POST", M, key, data).status_code == 205
    data = urlencode({"model": "pm2", "code": "share1", "options[]": []}, doseq=True)
    assert pyonep(server, "POST", M, key, data).status_code == 205
    assert lines(pyonep(server, "GET", M, key)) == ["pm1", "pm2"]
    r = pyonep(server, "GET", M + "pm1", key)
    assert r.text == f"rid={vendor['rid']}&options[]=noaliases"


def test_pyonep_model_update_put_without_content_type(server, vendor, vclient):
    """pyonep Provision.model_update (exosite-labs/pyonep, pyonep/provision.py): PUT
    model/<m> with `rid=<rid>&options%5B%5D=...` and no Content-Type (set on POST only)."""
    model = new_model(vclient)
    data = urlencode({"rid": vendor["rid"], "options[]": ["nocomments"]}, doseq=True)
    r = pyonep(server, "PUT", M + model, vendor["cik"], data)
    assert r.status_code == 205, r.text
    assert vclient.get(M + model).text == f"rid={vendor['rid']}&options[]=nocomments"


def test_provision_examples_model_put_options_without_brackets(server, vendor, vclient):
    """provision_examples provisionManageModelModelPUT('&options=nohistorical')
    (exosite-garage/provision_examples, provision_manager.py / provision_test.py)."""
    model = new_model(vclient)
    body = f"rid={vendor['rid']}&options=nohistorical".encode()
    status, _ = raw(
        server,
        [
            f"PUT {M}{model} HTTP/1.1",
            "Host: m2.exosite.com",
            f"X-Exosite-CIK: {vendor['cik']}",
            f"Content-Type: {FORM}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ],
        body,
    )
    assert status == 205
    assert vclient.get(M + model).text == f"rid={vendor['rid']}&options[]=nohistorical"


def test_pyonep_model_remove(server, vendor, vclient):
    """pyonep Provision.model_remove (exosite-labs/pyonep, pyonep/provision.py; the same in
    goonep Model_remove, javaonep model_remove): DELETE model/<m> with the body
    `delete=true&model=<m>&confirm=true` and no Content-Type."""
    model = new_model(vclient)
    data = urlencode({"delete": "true", "model": model, "confirm": "true"})
    assert pyonep(server, "DELETE", M + model, vendor["cik"], data).status_code == 205
    assert vclient.get(M + model).status_code == 404


def test_pyonep_model_remove_urllib2_form_type(server, vendor, vclient):
    """pyonep Provision.model_remove before 0.8 (exosite-labs/pyonep, pyonep/provision.py at
    a335436, urllib2): the same body with the form Content-Type urllib2 adds to any body."""
    model = new_model(vclient)
    data = urlencode({"delete": "true", "model": model, "confirm": "true"})
    r = pyonep(server, "DELETE", M + model, vendor["cik"], data, extra={"Content-Type": FORM})
    assert r.status_code == 205
    assert vclient.get(M + model).status_code == 404


def test_model_remove_body_naming_another_model(server, vendor, vclient):
    """A DELETE model/<m> body naming another model is refused: which one was meant?"""
    model, other = new_model(vclient), new_model(vclient)
    data = urlencode({"delete": "true", "model": other})
    r = pyonep(server, "DELETE", M + model, vendor["cik"], data)
    assert r.status_code == 400 and "model" in r.text
    assert vclient.get(M + model).status_code == 200
    assert vclient.get(M + other).status_code == 200


def test_model_delete_on_collection(server, vendor, vclient):
    """Model deletion as `DELETE /provision/manage/model/` with `delete=true&model=<m>` in
    the body (a form vendors' scripts sent)."""
    model = new_model(vclient)
    r = pyonep(server, "DELETE", M, vendor["cik"], urlencode({"delete": "true", "model": model}))
    assert r.status_code == 205, r.text
    assert vclient.get(M + model).status_code == 404
    r = pyonep(server, "DELETE", M, vendor["cik"], urlencode({"delete": "true", "model": model}))
    assert r.status_code == 404
    assert pyonep(server, "DELETE", M, vendor["cik"], "delete=true").status_code == 400


# -- content ----------------------------------------------------------------------------------


def test_pyonep_content_create_upload_info_download_remove(server, vendor, vclient):
    """pyonep Provision.content_create / content_upload / content_list / content_info /
    content_download / content_remove (exosite-labs/pyonep, pyonep/provision.py):
    `id=<id>&meta=<meta>&protected=true`; the blob POSTed with Content-Type <mimetype>;
    info at content/<m>/<id> (vendor) and /provision/download?vendor&model&id&info=true
    (device CIK); the blob from /provision/download?vendor&model&id (the Session's Accept */*
    replaces the "*" asked for)."""
    model = new_model(vclient)
    key = vendor["cik"]
    data = urlencode({"id": "a.txt", "meta": "This is text"})
    assert pyonep(server, "POST", C + model + "/", key, data).status_code == 205
    r = pyonep(
        server,
        "POST",
        C + model + "/a.txt",
        key,
        b"content data",
        extra={"Content-Type": "text/plain"},
    )
    assert r.status_code == 205
    assert lines(pyonep(server, "GET", C + model + "/", key)) == ["a.txt"]
    info = pyonep(server, "GET", C + model + "/a.txt", key).text.strip().split(",")
    assert info[0] == "text/plain" and info[1] == "12" and info[3:] == ["This is text", "false"]
    add_sn(vclient, model, "d1")
    enable(vclient, model, "d1", vendor["rid"])
    act = urlencode({"vendor": vendor["vendor"], "model": model, "sn": "d1"})
    cik = pyonep(server, "POST", "/provision/activate", "", act).text
    q = urlencode({"vendor": vendor["vendor"], "model": model, "id": "a.txt", "info": "true"})
    r = pyonep(server, "GET", "/provision/download", cik, q)
    assert r.status_code == 200 and r.text.startswith("text/plain,12,")
    q = urlencode({"vendor": vendor["vendor"], "model": model, "id": "a.txt"})
    r = pyonep(server, "GET", "/provision/download", cik, q, extra={"Accept": "*/*"})
    assert r.status_code == 200 and r.content == b"content data"
    assert pyonep(server, "DELETE", C + model + "/a.txt", key).status_code == 205
    assert pyonep(server, "GET", C + model + "/", key).text == ""
    data = urlencode({"id": "p", "meta": "", "protected": "true"})
    assert pyonep(server, "POST", C + model + "/", key, data).status_code == 205
    assert vclient.get(C + model + "/p").text.strip().endswith(",true")


def test_exoline_content_put_without_mime_and_get(server, vendor, vclient, token):
    """`exo content put` then `exo content get` (exosite/exoline, exoline/plugins/
    provision.py): when mimetypes cannot guess, pyonep's headers carry Content-Type None,
    which requests drops: an upload with no Content-Type at all; the blob back from
    content/<m>/<id>?download=true with the vendor token."""
    model = new_model(vclient)
    assert exoline(server, "GET", C + model + "/fw", token).status_code == 404
    data = urlencode({"id": "fw", "meta": ""})
    assert exoline(server, "POST", C + model + "/", token, data).status_code == 205
    r = exoline(server, "POST", C + model + "/fw", token, b"\x00\x01blob", {"Content-Type": None})
    assert r.status_code == 205, r.text
    assert vclient.get(C + model + "/fw").text.startswith("application/octet-stream,6,")
    r = exoline(server, "GET", C + model + "/fw?download=true", token, extra={"Accept": "*"})
    assert r.status_code == 200 and r.content == b"\x00\x01blob"


def test_provision_examples_content_upload_form_type_and_bare_query(server, vendor, vclient):
    """provision_examples provisionManageContentModelIDPOST / ...IDGET('') (exosite-garage/
    provision_examples, provision_manager.py): the blob sent with the form Content-Type
    (stored as given), then the info asked with an empty query (`<id>?`)."""
    model = new_model(vclient)
    add_content(vclient, model, "fw1")
    body = b"THISISMYFIRMWAREFILE"
    head = [
        f"POST {C}{model}/fw1 HTTP/1.1",
        "Host: m2.exosite.com",
        f"X-Exosite-CIK: {vendor['cik']}",
        f"Content-Type: {FORM}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    assert raw(server, head, body)[0] == 205
    get = [f"GET {C}{model}/fw1? HTTP/1.1", "Host: m2.exosite.com"]
    status, text = raw(server, get + [f"X-Exosite-CIK: {vendor['cik']}", "Connection: close"])
    assert status == 200 and text.startswith(FORM + ",20,")
    get = [f"GET {C}{model}/fw1?download=true HTTP/1.1", "Host: m2.exosite.com"]
    status, text = raw(server, get + [f"X-Exosite-CIK: {vendor['cik']}", "Connection: close"])
    assert status == 200 and text == body.decode()


# -- vendor names -----------------------------------------------------------------------------


def test_pyonep_vendor_show_unregister_register(server):
    """pyonep Provision.vendor_show / vendor_unregister / vendor_register (exosite-labs/
    pyonep, pyonep/provision.py; the same in goonep and javaonep): show and unregister always
    put the key in `X-Exosite-Token`, which for this procedure is the client's CIK (a vendor
    token is no client: still 401); register uses `X-Exosite-CIK` by default."""
    v = server.add_vendor()
    r = pyonep(server, "GET", "/provision/register", v["cik"], key_is_cik=False)
    assert r.status_code == 200 and r.text == v["vendor"]
    with server.session(cik=v["cik"]) as s:
        tok = s.post("/provision/admin/auth/", data={"id": "t"}).text
    assert len(tok) == 40
    r = pyonep(server, "GET", "/provision/register", tok, key_is_cik=False)
    assert r.status_code == 401
    data = urlencode({"delete": "true", "vendor": v["vendor"]})
    r = pyonep(server, "POST", "/provision/register", v["cik"], data, key_is_cik=False)
    assert r.status_code == 205, r.text
    r = pyonep(server, "GET", "/provision/register", v["cik"], key_is_cik=False)
    assert r.status_code == 404
    data = urlencode({"vendor": v["vendor"]})
    assert pyonep(server, "POST", "/provision/register", v["cik"], data).status_code == 205
    assert (
        pyonep(server, "GET", "/provision/register", v["cik"], key_is_cik=False).text
        == v["vendor"]
    )
    assert (
        pyonep(server, "GET", "/provision/register", "0" * 40, key_is_cik=False).status_code == 401
    )


# -- selectors: never silently another procedure ----------------------------------------------


@pytest.mark.parametrize(
    "body, named",
    [
        ("delete=maybe&sn=a", "delete"),
        ("remove=yes&sn=a", "remove"),
        ("add=1&sn=a", "add"),
        ("purge=true&sn=a", "purge"),
        ("add=true&remove=true&sn=a", "remove"),
        ("add=false&sn=a", "add"),
    ],
)
def test_unknown_selector_on_sn_list(vclient, body, named):
    """An unknown action parameter, or a known one with an unknown value, is a 400 that
    names it; nothing is added or removed."""
    model = new_model(vclient)
    add_sn(vclient, model, "keep")
    r = vclient.post(M + model + "/", data=body, headers={"Content-Type": FORM})
    assert r.status_code == 400 and named in r.text, r.text
    assert lines(vclient.get(M + model + "/")) == ["keep,,"]


@pytest.mark.parametrize(
    "method, path, body, named",
    [
        ("POST", M, "model={m}&delete=maybe", "delete"),
        ("POST", M, "model={m}&remove=true", "remove"),
        ("POST", M, "model={m}&delete=true&confirm=no", "confirm"),
        ("DELETE", M + "{m}", "delete=false&model={m}", "delete"),
        ("DELETE", M, "remove=true&model={m}", "remove"),
        ("POST", M + "{m}/s1", "regenerate=true", "regenerate"),
        ("POST", M + "{m}/s1", "enable=maybe", "enable"),
        ("POST", M + "{m}/s1", "disable=true&purge=true", "purge"),
        ("POST", C + "{m}/", "id=c1&delete=maybe", "delete"),
        ("POST", C + "{m}/", "id=c1&remove=true", "remove"),
        ("POST", "/provision/manage/group/{m}/", "id=g1&delete=1", "delete"),
        ("POST", "/provision/manage/group/{m}/", "id=g1&remove=true", "remove"),
        ("POST", "/provision/manage/group/{m}/g1/", "type=sn&id=s1&remove=true", "remove"),
        ("POST", "/provision/manage/share/{m}/", "vendor=x&remove=true", "remove"),
        ("POST", "/provision/admin/auth/", "id=t9&remove=true", "remove"),
    ],
)
def test_unknown_selector_refused(vclient, vendor, method, path, body, named):
    """The same rule on every management procedure that takes a form: the model, its serial
    number, content, groups, members, shares and tokens are all left as they were."""
    model = new_model(vclient)
    add_sn(vclient, model, "s1")
    add_content(vclient, model, "c1")
    assert vclient.post(f"/provision/manage/group/{model}/", data={"id": "g1"}).status_code == 205
    path, body = path.format(m=model), body.format(m=model)
    r = vclient.request(method, path, data=body, headers={"Content-Type": FORM})
    assert r.status_code == 400 and named in r.text, r.text
    assert vclient.get(M + model).status_code == 200
    assert vclient.get(M + model + "/s1").status_code == 200
    assert lines(vclient.get(C + model + "/")) == ["c1"]
    assert lines(vclient.get(f"/provision/manage/group/{model}/")) == ["g1,"]
    assert vclient.get("/provision/admin/auth/").text == ""


@pytest.mark.parametrize(
    "path, named",
    [
        (C + "{m}/c1?download=maybe", "download"),
        (C + "{m}/c1?show=log", "show"),
        (C + "{m}/c1?info=true", "info"),
        (M + "{m}/?status=1", "status"),
        (M + "{m}/?show=log", "show"),
        (M + "{m}/?remove=true", "remove"),
        (M + "{m}/s1?show=ranges", "show"),
        (M + "?show=all", "show"),
        ("/provision/manage/group/{m}/g1?show=members", "show"),
    ],
)
def test_unknown_query_selector_refused(vclient, path, named):
    """GET procedures too: an unknown `show`, `download`, `status`... is a 400 naming it,
    never the plain listing or info."""
    model = new_model(vclient)
    add_sn(vclient, model, "s1")
    add_content(vclient, model, "c1", b"x")
    assert vclient.post(f"/provision/manage/group/{model}/", data={"id": "g1"}).status_code == 205
    r = vclient.get(path.format(m=model))
    assert r.status_code == 400 and named in r.text, r.text


def test_device_download_unknown_info_value(server, vendor, vclient):
    """/provision/download?...&info=maybe was read as a blob download; now a 400 naming
    `info` (info=true and info=false keep their meaning)."""
    model = new_model(vclient)
    add_content(vclient, model, "c1", b"blob")
    add_sn(vclient, model, "d1")
    enable(vclient, model, "d1", vendor["rid"])
    act = {"vendor": vendor["vendor"], "model": model, "sn": "d1"}
    with server.session() as anon:
        cik = anon.post("/provision/activate", data=act).text
    with server.session(cik=cik) as dev:
        q = {"vendor": vendor["vendor"], "model": model, "id": "c1"}
        r = dev.get("/provision/download", params={**q, "info": "maybe"})
        assert r.status_code == 400 and "info" in r.text
        assert dev.get("/provision/download", params={**q, "info": "false"}).content == b"blob"
        assert dev.get("/provision/download", params={**q, "info": "true"}).text.startswith(
            "text/plain,4,"
        )


def test_selector_values_keep_their_spelling(vclient):
    """`true`, `false` and the empty value keep the meanings they had; `True`/`TRUE` (what
    str(True) gives a script) mean true."""
    model = new_model(vclient)
    add_sn(vclient, model, "a")
    assert (
        vclient.post(
            M + model + "/", data="delete=True&sn=a", headers={"Content-Type": FORM}
        ).status_code
        == 205
    )
    assert (
        vclient.post(
            M + model + "/", data="delete=false&sn=b", headers={"Content-Type": FORM}
        ).status_code
        == 205
    )
    assert (
        vclient.post(
            M + model + "/", data="delete=&sn=c", headers={"Content-Type": FORM}
        ).status_code
        == 205
    )
    assert [x.split(",")[0] for x in lines(vclient.get(M + model + "/"))] == ["b", "c"]
    assert vclient.post(M, data={"model": model, "delete": "TRUE"}).status_code == 205
    assert vclient.get(M + model).status_code == 404
