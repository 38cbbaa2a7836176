"""`make rollout`'s harness on a small sample (the README's figures come from 10 000 devices):
a bad image pauses within its first wave, a good one and a plain upload reach every device."""

from tools.harness import rollout


def test_small_sample():
    res = rollout.run(
        devices=120, poll=1.0, apply=0.2, size=2048, waves=(10,), log=lambda *a: None,
        min_devices=3,
    )  # fmt: skip
    assert rollout.check(res) == []
    (bad,) = res["bad"]
    assert bad["state"] == "paused" and 0 < bad["blast_radius"] <= bad["first_wave"] < 30
    assert res["good"]["all"] and res["plain"]["all"] and res["server_alive"]
    assert res["errors"] == []
    # reports moved the waves on: 1, 10, 50 then 100 %
    assert sorted(res["good"]["marks"]) == [1, 10, 50, 100]
