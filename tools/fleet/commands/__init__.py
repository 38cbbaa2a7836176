"""The command families of `exoprov fleet`, one module each.

A family module has HELP (one line for `exoprov fleet --help`) and register(f), which adds its
commands with `f.command(name, handler, what, help)`; a handler takes (client, args) and returns
an output.Table or output.Done, or raises common.UsageError / common.StepError. FAMILIES is the
order `exoprov fleet --help` lists them in.
"""

from . import content, group, key, model, rollout, share, sn, token, vendor

FAMILIES = {
    "model": model,
    "sn": sn,
    "content": content,
    "rollout": rollout,
    "group": group,
    "share": share,
    "token": token,
    "vendor": vendor,
    "key": key,
}
