"""`exoprov fleet rollout`: start, status, pause, resume, abort, list (README, "Rollouts")."""

from ..output import Done, Table

HELP = "rollout: start, status, pause, resume, abort, list (staged, self-stopping)"


def _summary(st):
    counts = ", ".join(f"{k} {v}" for k, v in sorted(st.get("counts", {}).items()))
    text = f"rollout of {st['content']}: {st['state']}"
    if st.get("waves"):
        text += f", wave {st['wave']:g} % ({st.get('wave_size', 0)} devices)"
    if st.get("reason"):
        text += f" ({st['reason']})"
    return text + (f"; devices: {counts}" if counts else "; no device reported yet")


def rollout_start(c, a):
    st = c.rollout_action(
        a.model,
        a.id,
        "start",
        waves=a.waves,
        group=a.group,
        min_devices=a.min_devices,
        max_failures=a.max_failures,
        success=a.success,
        soak=a.soak,
    )
    return Done(_summary(st), model=a.model, **st)


def rollout_status(c, a):
    st = c.rollout_status(a.model, a.id)
    lines = [_summary(st)]
    for w in st.get("by_wave", []):
        states = ", ".join(f"{k} {v}" for k, v in sorted(w["states"].items()))
        lines.append(f"  wave {w['wave']:g} %: {w['devices']} devices ({states or 'none'})")
    return Done("\n".join(lines), model=a.model, **st)


def _action(name):
    def run(c, a):
        body = {"to": a.to} if getattr(a, "to", None) else {}
        st = c.rollout_action(a.model, a.id, name, **body)
        return Done(_summary(st), model=a.model, **st)

    return run


def rollout_list(c, a):
    rows = []
    for st in c.rollout_list(a.model):
        counts = st.get("counts", {})
        rows.append(
            [
                st["content"],
                st["state"],
                f"{st['wave']:g}" if st.get("waves") else "",
                counts.get("active", 0),
                sum(counts.get(k, 0) for k in ("failed", "rolledback", "refused")),
                st.get("took", 0),
            ]
        )
    return Table(["content", "state", "wave", "active", "failed", "took"], rows)


def register(f):
    p = f.command(
        "start",
        rollout_start,
        "start a rollout of {id} in model {model}",
        "offer a content held for a rollout (content upload --hold) wave by wave",
    )
    p.add_argument("model")
    p.add_argument("id", metavar="CONTENT_ID")
    p.add_argument(
        "--waves",
        default="1,10,50,100",
        help="percentages of the devices, each wave holding the previous (default 1,10,50,100)",
    )
    p.add_argument("--group", help="only this group's devices")
    p.add_argument(
        "--min-devices",
        type=int,
        default=1,
        metavar="N",
        help="no pause before N devices started on the content (default 1)",
    )
    p.add_argument(
        "--max-failures",
        default="20",
        metavar="PCT",
        help="pause when this %% of the devices that started report failed, rolledback or "
        "refused (default 20)",
    )
    p.add_argument(
        "--success",
        default="100",
        metavar="PCT",
        help="the next wave starts when this %% of the current one runs the content (default 100)",
    )
    p.add_argument(
        "--soak",
        default="0",
        metavar="DURATION",
        help="and this long after the wave started: 0, 30s, 10m, 2h (default 0)",
    )
    p = f.command(
        "status", rollout_status, "read the rollout of {id}", "state, wave, devices by state"
    )
    p.add_argument("model")
    p.add_argument("id", metavar="CONTENT_ID")
    for name, text in (
        ("pause", "offer the content to nobody new"),
        ("resume", "go on with the current wave"),
        ("abort", "withdraw the content from every device"),
    ):
        p = f.command(name, _action(name), f"{name} the rollout of {{id}}", text)
        p.add_argument("model")
        p.add_argument("id", metavar="CONTENT_ID")
        if name == "abort":
            p.add_argument(
                "--to",
                metavar="CONTENT_ID",
                help="offer this content (signed with --rollback, held) to the devices that "
                "took the aborted one",
            )
    p = f.command(
        "list", rollout_list, "list the rollouts of model {model}", "rollouts", listing=True
    )
    p.add_argument("model")
