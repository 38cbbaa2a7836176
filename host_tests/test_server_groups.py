"""Groups and their members: form and CSV bodies, filters, pagination, nesting lists."""

from serverkit import lines, new_model

CSV = {"Content-Type": "text/csv; charset=utf-8"}


def test_group_create_list_info_delete(vclient):
    model = new_model(vclient)
    url = f"/provision/manage/group/{model}/"
    assert vclient.get(url).status_code == 204
    for i in range(7):
        r = vclient.post(url, data={"id": f"g{i}", "meta": f"meta {i}"})
        assert r.status_code == 205
    assert vclient.post(url, data={"id": "g0"}).status_code == 409
    r = vclient.get(url)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert lines(r) == [f"g{i},meta {i}" for i in range(5)]  # default limit 5
    assert lines(vclient.get(url, params={"offset": 5, "limit": 5})) == ["g5,meta 5", "g6,meta 6"]
    r = vclient.get(url + "g1")
    assert r.status_code == 200 and r.text == "meta 1,0\n"
    assert vclient.get(url + "nosuch").status_code == 404
    assert vclient.post(url, data={"id": "g1", "delete": "true"}).status_code == 205
    assert vclient.post(url, data={"id": "g1", "delete": "true"}).status_code == 404
    assert vclient.delete(url + "g2").status_code == 205
    assert vclient.delete(url + "g2").status_code == 404
    assert vclient.get(url + "g2").status_code == 404
    assert vclient.post(url, data={"meta": "no id"}).status_code == 400


def test_members_form_csv_filters(vclient):
    model = new_model(vclient)
    g = f"/provision/manage/group/{model}/grp/"
    vclient.post(f"/provision/manage/group/{model}/", data={"id": "grp"})
    assert vclient.get(g).status_code == 204
    r = vclient.post(g, data={"type": "sn", "id": "s1", "expire": "0", "meta": "m"})
    assert r.status_code == 205
    r = vclient.post(g, data={"type": "sn", "id[]": ["s2", "s3"], "expire": "99", "meta": "mm"})
    assert r.status_code == 205
    body = "content,c1,0,x\ngroup,sub,123,nested, with comma\ncustom,thing,,\n"
    assert vclient.post(g, data=body, headers=CSV).status_code == 205
    r = vclient.get(g, params={"limit": 100})
    assert r.status_code == 200
    assert lines(r) == [
        "sn,s1,0,m",
        "sn,s2,99,mm",
        "sn,s3,99,mm",
        "content,c1,0,x",
        "group,sub,123,nested, with comma",
        "custom,thing,0,",
    ]
    assert lines(vclient.get(g)) == lines(r)[:5]
    assert lines(vclient.get(g, params={"type": "sn", "offset": 1})) == [
        "sn,s2,99,mm",
        "sn,s3,99,mm",
    ]
    assert lines(vclient.get(g, params={"id": "c1"})) == ["content,c1,0,x"]
    assert vclient.get(g, params={"id": "zz"}).status_code == 204
    assert vclient.get(g, params={"type": "nope"}).status_code == 204
    r = vclient.get(g, params={"type": "sn", "id": "s2"})
    assert r.status_code == 200 and r.text == "sn,s2,99,mm\n"
    assert vclient.get(g, params={"type": "sn", "id": "zz"}).status_code == 404
    # update in place
    assert (
        vclient.post(g, data={"type": "sn", "id": "s1", "expire": "5", "meta": "new"}).status_code
        == 205
    )
    assert vclient.get(g, params={"type": "sn", "id": "s1"}).text == "sn,s1,5,new\n"
    assert vclient.get(f"/provision/manage/group/{model}/grp").text == ",6\n"
    # delete: form (one and many) and CSV
    assert vclient.post(g, data={"type": "sn", "id": "s1", "delete": "true"}).status_code == 205
    r = vclient.post(g, data={"type": "sn", "id[]": ["s2", "s3"], "delete": "true"})
    assert r.status_code == 205
    assert vclient.delete(g, data="content,c1\ncustom,thing\n", headers=CSV).status_code == 205
    assert lines(vclient.get(g)) == ["group,sub,123,nested, with comma"]
    # malformed
    assert vclient.post(g, data={"type": "sn", "id": "s9", "expire": "soon"}).status_code == 400
    assert vclient.post(g, data={"id": "s9"}).status_code == 400
    assert vclient.post(g, data={"type": "sn"}).status_code == 400
    assert vclient.post(g, data="sn\n", headers=CSV).status_code == 400
    assert vclient.delete(g, data="sn\n", headers=CSV).status_code == 400
    assert vclient.delete(g).status_code == 400
    assert (
        vclient.post(
            f"/provision/manage/group/{model}/nosuch/", data={"type": "sn", "id": "x"}
        ).status_code
        == 404
    )


def test_group_membership_of_groups(vclient):
    model = new_model(vclient)
    base = f"/provision/manage/group/{model}/"
    for gid in ("parent1", "parent2", "child"):
        vclient.post(base, data={"id": gid})
    assert vclient.get(base + "child", params={"show": "groups"}).status_code == 204
    vclient.post(base + "parent1/", data={"type": "group", "id": "child"})
    vclient.post(base + "parent2/", data={"type": "group", "id": "child"})
    r = vclient.get(base + "child", params={"show": "groups"})
    assert r.status_code == 200 and lines(r) == ["parent1", "parent2"]
    # deleting a group removes it from the groups that held it
    assert vclient.delete(base + "child").status_code == 205
    assert vclient.get(base + "parent1/").status_code == 204


def test_deleting_nothing_is_404(vclient):
    model = new_model(vclient)
    vclient.post(f"/provision/manage/group/{model}/", data={"id": "g"})
    g = f"/provision/manage/group/{model}/g/"
    vclient.post(g, data={"type": "sn", "id": "a"})
    assert vclient.post(g, data={"type": "sn", "id": "b", "delete": "true"}).status_code == 404
    assert vclient.delete(g, data="sn,b\n", headers=CSV).status_code == 404
    assert (
        vclient.post(g, data={"type": "content", "id": "a", "delete": "true"}).status_code == 404
    )
    assert vclient.post(g, data={"type": "sn", "id": "a", "delete": "true"}).status_code == 205
