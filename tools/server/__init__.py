"""The self-hosted Provision API v1.1 server (`exoprov server`, `exoprov admin`).

Modules: cli (commands), app (routes, middleware), one module per API area (device, models,
content, groups, vendor, onep), auth (who is calling), db (all SQL), blobs (content files),
byteranges (HTTP Range/If-Range), snranges (serial-number ranges), ratelimit, util (parsing).
"""
