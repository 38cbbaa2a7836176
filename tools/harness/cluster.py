"""The production arrangement on loopback: nginx (deploy/nginx/exoprov.conf) terminating TLS
in front of N `exoprov server` instances on one database, for tests, `make load` and
`make bench`.

Everything lives in one temporary directory and nothing needs root: nginx runs with
`-p DIR -c DIR/nginx.conf -g 'daemon off;'`, its pid file, logs and temporary paths inside DIR
(when it does run as root, its workers keep the caller's user so they can read DIR). The
throwaway CA and the certificate for 127.0.0.1 are made here with `cryptography`.

    with Cluster(instances=2) as c:       # c.url = https://127.0.0.1:PORT, c.ca = CA file
        vendor = c.add_vendor("v")
        c.kill(0)                         # SIGKILL one instance
"""

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from tools.harness import procs
from tools.harness.launch import ROOT, ServerProcess

TEMPLATE = ROOT / "deploy" / "nginx" / "exoprov.conf"


def find_nginx():
    for path in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if path and os.access(path, os.X_OK):
            return path
    return None


def ensure_nginx(install=False):
    """The nginx binary; with `install` (benchmarks), `apt-get install nginx` when missing and
    root. Raises RuntimeError saying what to do otherwise."""
    path = find_nginx()
    if path or not install:
        if path:
            return path
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError("nginx is not installed and cannot be installed here: "
                           "run `apt-get install nginx` as root")  # fmt: skip
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx"]
    for cmd in (["apt-get", "update", "-q"], install):
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, timeout=900)
    path = find_nginx()
    if not path:
        raise RuntimeError("apt-get install nginx did not provide an nginx binary")
    return path


def make_certs(d):
    """A CA and a certificate for 127.0.0.1/localhost signed by it (EC P-256, a day long).
    -> {"ca", "cert", "key"} paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject, issuer, pub, key, ca):
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            alt = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build(name("exoprov cluster test CA"), name("exoprov cluster test CA"),
               ca_key.public_key(), ca_key, True)  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name("127.0.0.1"), ca.subject, key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "cert.pem").write_bytes(cert.public_bytes(pem))
    keyfile = d / "key.pem"
    keyfile.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    keyfile.chmod(0o600)
    return {"ca": str(d / "ca.pem"), "cert": str(d / "cert.pem"), "key": str(keyfile)}


def render(upstreams, listen, cert=None, key=None, max_body="64m", template=TEMPLATE,
           cache="/var/cache/nginx/exoprov", cache_max="2g", grant_ttl="1s"):  # fmt: skip
    """deploy/nginx/exoprov.conf with its placeholders filled (comments left alone); without
    cert, plain HTTP."""
    ups = "\n    ".join(f"server {u} max_fails=1 fail_timeout=5s;" for u in upstreams)
    values = {"@UPSTREAMS@": ups, "@LISTEN@": listen, "@MAX_BODY@": max_body}
    values.update({"@CACHE@": str(cache), "@CACHE_MAX@": cache_max, "@GRANT_TTL@": grant_ttl})
    values.update({"@CERT@": cert or "", "@KEY@": key or ""})
    out = []
    for line in Path(template).read_text().splitlines():
        if not line.lstrip().startswith("#"):
            if not cert and line.strip().startswith("ssl_"):
                continue
            for k, v in values.items():
                line = line.replace(k, v)
            if not cert:
                line = line.replace(" ssl;", ";")
        out.append(line)
    return "\n".join(out) + "\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_main_conf(d, include, workers=2):
    """A whole nginx.conf whose every path is inside `d` (no root needed)."""
    d = Path(d)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    user = ""
    if os.geteuid() == 0:  # else nginx's workers become nobody and cannot read d (0700)
        import grp
        import pwd

        user = (f"user {pwd.getpwuid(os.getuid()).pw_name} "
                f"{grp.getgrgid(os.getgid()).gr_name};\n")  # fmt: skip
    return (
        f"{user}worker_processes {workers};\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "    access_log off;\n    sendfile on;\n    tcp_nopush on;\n"
        "    default_type application/octet-stream;\n"
        f"    client_body_temp_path {d}/tmp/body;\n    proxy_temp_path {d}/tmp/proxy;\n"
        f"    fastcgi_temp_path {d}/tmp/fastcgi;\n    uwsgi_temp_path {d}/tmp/uwsgi;\n"
        f"    scgi_temp_path {d}/tmp/scgi;\n"
        f"    include {include};\n"
        "}\n"
    )


class Nginx:
    """nginx on `conf` (an http-level file to include) in directory `d`, in the foreground."""

    def __init__(self, d, include, port, workers=2, tls=False):
        self.dir = Path(d)
        binary = ensure_nginx()
        conf = self.dir / "nginx.conf"
        conf.write_text(nginx_main_conf(self.dir, include, workers))
        cmd = [binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf),
               "-g", "daemon off;"]  # fmt: skip
        self.proc = procs.spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port = port
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start: " + self.error_log()[-2000:])

    def error_log(self):
        try:
            return (self.dir / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        procs.stop(self.proc, signal.SIGQUIT)  # graceful: finish the requests in flight


class Cluster:
    """`instances` servers (each `--workers workers`) on one database, nginx in front."""

    def __init__(self, instances=2, workers=1, extra=(), db=None, tls=True, nginx_workers=2,
                 max_body="64m", grant_ttl="1s"):  # fmt: skip
        self._tmp = tempfile.TemporaryDirectory(prefix="exoprov-cluster-")
        self.dir = Path(self._tmp.name)
        self.db = db or str(self.dir / "exoprov.db")
        self.extra = [*map(str, extra), "--trusted-proxy", "127.0.0.1/32"]
        self.workers = workers
        self.servers = []
        self.nginx = None
        try:
            for i in range(instances):
                self.servers.append(self._start(i))
            self.certs = make_certs(self.dir / "certs") if tls else None
            port = free_port()
            site = self.dir / "exoprov.conf"
            ups = [f"127.0.0.1:{s.port}" for s in self.servers]
            cert, key = (self.certs["cert"], self.certs["key"]) if tls else (None, None)
            cache = self.dir / "nginx" / "cache"
            cache.mkdir(parents=True)
            site.write_text(render(ups, f"127.0.0.1:{port}", cert, key, max_body, cache=cache,
                                   grant_ttl=grant_ttl))  # fmt: skip
            self.nginx = Nginx(self.dir / "nginx", site, port, nginx_workers, tls)
        except BaseException:
            self.stop()
            raise
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.ca = self.certs["ca"] if tls else None

    def _start(self, i):
        args = list(self.extra)
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        return ServerProcess(*args, workdir=self.dir / f"instance{i}", db=self.db)

    def add_vendor(self, name):
        return self.servers[0].add_vendor(name)

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.ca) if self.ca else None

    def kill(self, i, sig=signal.SIGKILL):
        """Kill instance i (its whole process group of workers too)."""
        proc = self.servers[i].proc
        for pid in _children(proc.pid):
            _signal(pid, sig)
        _signal(proc.pid, sig)
        proc.wait(10)

    def stop(self):
        if self.nginx:
            self.nginx.stop()
        for s in self.servers:
            s.stop()
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
