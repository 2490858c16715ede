"""etcdctl 3.4's `user`, `role` and `auth` commands and `--user`, run the
same against `keel dev` and Debian's etcd 3.4: every command's output (and
error line) must be the same. Then what only Keel can show: the auth store
survives a kill -9, and a backup restored with `keel snapshot restore` keeps
its users and roles."""
import json
import subprocess

import pytest

from conftest import KEEL, Node
from etcd_cluster import etcdctl
from test_etcd_gateway import Etcd

FAST_BCRYPT = ["--bcrypt-cost", "4"]

# (user, command...): the session an operator types to lock down a prefix.
SESSION = [
    (None, "user", "add", "root:rootpw"),
    (None, "auth", "enable"),                     # root lacks the root role
    (None, "role", "add", "root"),
    (None, "user", "grant-role", "root", "root"),
    (None, "role", "add", "reader"),
    (None, "role", "grant-permission", "reader", "--prefix=true", "read", "/app/"),
    (None, "role", "add", "writer"),
    (None, "role", "grant-permission", "writer", "readwrite", "/app/a", "/app/m"),
    (None, "role", "grant-permission", "writer", "--from-key", "write", "/z"),
    (None, "user", "add", "ann:annpw"),
    (None, "user", "grant-role", "ann", "reader"),
    (None, "user", "add", "wes:wespw"),
    (None, "user", "grant-role", "wes", "writer"),
    (None, "user", "add", "nopw", "--no-password"),
    (None, "role", "get", "reader"),
    (None, "role", "get", "writer"),
    (None, "role", "list"),
    (None, "user", "list"),
    (None, "user", "get", "wes"),
    (None, "user", "get", "wes", "--detail"),
    (None, "put", "/app/a", "0"),
    (None, "auth", "enable"),
    (None, "put", "/app/a", "1"),                 # no user: refused
    ("root:rootpw", "put", "/app/a", "1"),
    ("root:wrong", "get", "/app/a"),
    ("ann:annpw", "get", "/app/", "--prefix"),
    ("ann:annpw", "put", "/app/a", "2"),          # read only
    ("ann:annpw", "get", "/other"),
    ("wes:wespw", "put", "/app/b", "2"),
    ("wes:wespw", "put", "/app/z", "2"),          # outside [/app/a, /app/m)
    ("wes:wespw", "put", "/zz", "2"),
    ("wes:wespw", "get", "/app/b"),
    ("wes:wespw", "del", "/app/a", "/app/c"),
    ("wes:wespw", "user", "list"),                # not root
    ("wes:wespw", "user", "get", "wes"),          # herself
    ("wes:wespw", "role", "get", "writer"),       # her role
    ("wes:wespw", "role", "get", "reader"),
    ("ann:annpw", "auth", "disable"),
    ("root:rootpw", "role", "revoke-permission", "reader", "/app/", "--prefix=true"),
    ("ann:annpw", "get", "/app/", "--prefix"),
    ("root:rootpw", "user", "revoke-role", "wes", "writer"),
    ("wes:wespw", "put", "/app/b", "3"),
    ("root:rootpw", "user", "passwd", "ann", "--interactive=false"),
    ("ann:annpw", "get", "/app/b"),               # the old password is gone
    ("ann:newpw", "role", "get", "reader"),
    ("root:rootpw", "user", "delete", "root"),
    ("root:rootpw", "role", "delete", "root"),
    ("root:rootpw", "user", "revoke-role", "root", "root"),
    ("root:rootpw", "role", "delete", "reader"),
    ("root:rootpw", "user", "get", "ann"),
    ("root:rootpw", "user", "delete", "wes"),
    ("wes:wespw", "get", "/app/b"),
    ("root:rootpw", "auth", "disable"),
    (None, "get", "/app/", "--prefix"),
]


def run(endpoint, user, args):
    """One etcdctl command: its stdout, or its last error line."""
    cmd = list(args)
    if user:
        cmd = ["--user", user, *cmd]
    stdin = "newpw\n" if "passwd" in args else None
    p = etcdctl(endpoint, *cmd, input=stdin, check=False)
    if p.returncode == 0:
        return p.stdout.strip()
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error")]
    return f"exit {p.returncode}: {errors[-1] if errors else p.stderr.strip()}"


@pytest.fixture
def etcd34(tmp_path):
    e = Etcd(tmp_path, FAST_BCRYPT).start()
    yield e
    e.stop()


def test_etcdctl_auth_session_prints_what_etcd_prints(make_node, etcd34):
    keel = make_node(extra=FAST_BCRYPT).start()
    etcd = etcd34.url.removeprefix("http://")
    for user, *args in SESSION:
        want = run(etcd, user, args)
        got = run(keel.etcd, user, args)
        assert got == want, f"etcdctl {user or ''} {' '.join(args)}:\n keel: {got}\n etcd: {want}"


def setup_locked_down(ep):
    """The session's users and roles, then auth on. (Not the session's early
    `auth enable`: etcdctl 3.4 answers a root without the root role by
    granting it and enabling auth at once.)"""
    enable = (None, "auth", "enable")
    for user, *args in [c for c in SESSION[:SESSION.index(enable, 2)] if c != enable]:
        run(ep, user, args)
    assert run(ep, None, ["auth", "enable"]) == "Authentication Enabled"


def test_auth_survives_kill9_and_snapshot_restore(make_node, tmp_path):
    n = make_node(extra=FAST_BCRYPT).start()
    setup_locked_down(n.etcd)
    assert run(n.etcd, "wes:wespw", ["put", "/app/b", "kept"]) == "OK"
    n.kill9()
    n = make_node(etcd_port=n.etcd_port, extra=FAST_BCRYPT).start()
    try:
        # Users, roles, permissions and "enabled" are back; tokens are not
        # (etcdctl authenticates per command).
        assert run(n.etcd, None, ["get", "/app/b"]).endswith("etcdserver: user name is empty")
        assert run(n.etcd, "ann:annpw", ["get", "/app/b"]) == "/app/b\nkept"
        assert "permission denied" in run(n.etcd, "ann:annpw", ["put", "/app/b", "x"])
        snap = tmp_path / "auth.db"
        # A snapshot is an administrator's: ann may not take one.
        assert "permission denied" in run(n.etcd, "ann:annpw", ["snapshot", "save", str(snap)])
        assert "Snapshot saved" in run(n.etcd, "root:rootpw", ["snapshot", "save", str(snap)])
    finally:
        n.stop()
    subprocess.run([str(KEEL), "snapshot", "restore", str(snap), "--data-dir",
                    str(tmp_path / "restored")], check=True, capture_output=True, timeout=30)
    r = Node(tmp_path / "restored", extra=FAST_BCRYPT).start()
    try:
        assert run(r.etcd, None, ["put", "/app/b", "x"]).endswith("etcdserver: user name is empty")
        assert run(r.etcd, "ann:annpw", ["get", "/app/b", "--print-value-only"]) == "kept"
        assert json.loads(run(r.etcd, "root:rootpw", ["user", "list", "-w", "json"]))["users"] == \
            ["ann", "nopw", "root", "wes"]
    finally:
        r.stop()
