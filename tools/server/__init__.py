"""The self-hosted Provision API v1.1 server (`exoprov server`, `exoprov admin`).

Modules: cli (commands), app (routes, each declaring the vendor access it takes, and the
middleware), one module per API area (device, models, content, groups, vendor, onep,
fleetstatus), auth (who is calling, and the per-route checks), storage (which engine a
--db names), db (all SQL, written once), engine (what an engine supplies), sqlite_engine
and pg_engine (the two), migrations (the numbered schema), blobs and pgblobs (content
blobs), ratelimit (failed activations), byteranges (HTTP Range/If-Range), snranges
(serial-number ranges), util (parsing).
"""
