"""etcd's authentication and authorization, differentially: the same auth
session goes to `keel dev` and to Debian's etcd 3.4 through the JSON gateway
(users, roles, permissions, auth enable, tokens, an allowed and a denied user
on every path), and every answer must agree: HTTP status, gRPC code, etcd's
error message, and the body with header ids set aside.

Where Keel follows a later etcd on purpose the test says so and checks
Keel's answer alone (etcd 3.4 has no /v3/auth/status, and answers
Maintenance.Status to anyone)."""
import pytest

from test_etcd_gateway import b64, make_pair  # noqa: F401 (a fixture)

FAST_BCRYPT = ["--bcrypt-cost", "4"]


@pytest.fixture
def pair(make_pair):  # noqa: F811
    return make_pair(keel_extra=FAST_BCRYPT, etcd_extra=FAST_BCRYPT)


def login(p, user, password):
    """Authenticates on both sides; later requests carry each side's token."""
    body = p.same("/v3/auth/authenticate", {"name": user, "password": password},
                  loose=("token",))
    for base in (p.keel, p.etcd):
        status, b = p.post(base, "/v3/auth/authenticate", {"name": user, "password": password})
        assert status == 200, b
        p.tokens[base] = b["token"]
    return body


def as_nobody(p):
    p.tokens = {}


def keel_only(p, path, body, status, message):
    got, b = p.post(p.keel, path, body)
    assert (got, b.get("message")) == (status, message), b


def perm(kind, key, range_end=None):
    out = {"permType": kind, "key": b64(key)}
    if range_end is not None:
        out["range_end"] = b64(range_end)
    return out


def setup_users(p):
    """root; role `app` with readwrite on prefix app/, read on `ro`, write on
    `wo`; alice holds app, bob holds nothing."""
    p.same("/v3/auth/enable", {})  # root does not exist
    p.same("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    p.same("/v3/auth/enable", {})  # root lacks the root role
    p.same("/v3/auth/role/add", {"name": "root"})
    p.same("/v3/auth/user/grant", {"user": "root", "role": "root"})
    p.same("/v3/auth/role/add", {"name": "app"})
    p.same("/v3/auth/role/grant", {"name": "app", "perm": perm("READWRITE", "app/", "app0")})
    p.same("/v3/auth/role/grant", {"name": "app", "perm": perm("READ", "ro")})
    p.same("/v3/auth/role/grant", {"name": "app", "perm": perm("WRITE", "wo")})
    # Granting the same range again replaces its type.
    p.same("/v3/auth/role/grant", {"name": "app", "perm": perm("WRITE", "ro")})
    p.same("/v3/auth/role/grant", {"name": "app", "perm": perm("READ", "ro")})
    p.same("/v3/auth/user/add", {"name": "alice", "password": "alicepw"})
    p.same("/v3/auth/user/grant", {"user": "alice", "role": "app"})
    p.same("/v3/auth/user/add", {"name": "bob", "password": "bobpw"})
    p.same("/v3/auth/user/add", {"name": "carol", "options": {"no_password": True}})


def test_auth_administration_answers_as_etcd(pair):
    p = pair
    setup_users(p)
    p.same("/v3/auth/user/get", {"name": "alice"})
    p.same("/v3/auth/user/get", {"name": "nobody"})
    p.same("/v3/auth/user/list", {})
    p.same("/v3/auth/role/get", {"role": "app"})
    p.same("/v3/auth/role/get", {"role": "root"})
    p.same("/v3/auth/role/get", {"role": "nothing"})
    p.same("/v3/auth/role/list", {})
    # Every error an administrator can cause.
    p.same("/v3/auth/user/add", {"name": "alice", "password": "x"})
    p.same("/v3/auth/user/add", {"name": ""})
    p.same("/v3/auth/role/add", {"name": "app"})
    p.same("/v3/auth/role/add", {"name": ""})
    p.same("/v3/auth/user/grant", {"user": "nobody", "role": "app"})
    p.same("/v3/auth/user/grant", {"user": "bob", "role": "nothing"})
    p.same("/v3/auth/user/grant", {"user": "alice", "role": "app"})  # granted already: fine
    p.same("/v3/auth/user/revoke", {"name": "bob", "role": "app"})
    p.same("/v3/auth/user/revoke", {"name": "nobody", "role": "app"})
    p.same("/v3/auth/role/grant", {"name": "nothing", "perm": perm("READ", "x")})
    # etcd 3.4 stores a range that ends before it starts; later etcds (and
    # Keel) refuse it.
    keel_only(p, "/v3/auth/role/grant", {"name": "app", "perm": perm("READ", "z", "a")},
              400, "etcdserver: invalid auth management")
    # etcd 3.4 crashes on a grant with no permission (a nil pointer in
    # RoleGrantPermission); later etcds (and Keel) refuse it.
    keel_only(p, "/v3/auth/role/grant", {"name": "app"}, 400,
              "etcdserver: permission not given")
    p.same("/v3/auth/role/revoke", {"role": "app", "key": b64("never")})
    p.same("/v3/auth/role/revoke", {"role": "nothing", "key": b64("x")})
    p.same("/v3/auth/user/delete", {"name": "nobody"})
    p.same("/v3/auth/role/delete", {"role": "nothing"})
    p.same("/v3/auth/user/changepw", {"name": "nobody", "password": "x"})
    p.same("/v3/auth/authenticate", {"name": "root", "password": "rootpw"})  # auth is off
    p.same("/v3/auth/disable", {})
    # Deleting a role takes it from its users.
    p.same("/v3/auth/role/add", {"name": "temp"})
    p.same("/v3/auth/user/grant", {"user": "bob", "role": "temp"})
    p.same("/v3/auth/role/delete", {"role": "temp"})
    p.same("/v3/auth/user/get", {"name": "bob"})
    p.same("/v3/auth/role/revoke", {"role": "app", "key": b64("wo")})
    p.same("/v3/auth/role/get", {"role": "app"})

    p.same("/v3/auth/enable", {})
    p.same("/v3/auth/enable", {})  # enabled already, as nobody: needs root now
    # With auth on: no user, a bad token, a wrong password, a no-password user.
    p.same("/v3/kv/put", {"key": b64("app/x"), "value": b64("1")})
    p.same("/v3/auth/user/list", {})
    p.tokens = {p.keel: "bogus.1", p.etcd: "bogus.1"}
    p.same("/v3/kv/range", {"key": b64("app/x")})
    as_nobody(p)
    p.same("/v3/auth/authenticate", {"name": "alice", "password": "wrong"})
    p.same("/v3/auth/authenticate", {"name": "nobody", "password": "x"})
    p.same("/v3/auth/authenticate", {"name": "carol", "password": ""})
    login(p, "alice", "alicepw")
    for path, body in [("/v3/auth/user/list", {}), ("/v3/auth/role/list", {}),
                       ("/v3/auth/user/add", {"name": "eve", "password": "x"}),
                       ("/v3/auth/role/add", {"name": "r2"}),
                       ("/v3/auth/user/grant", {"user": "alice", "role": "root"}),
                       ("/v3/auth/disable", {}),
                       ("/v3/auth/user/get", {"name": "alice"}),  # herself: allowed
                       ("/v3/auth/user/get", {"name": "bob"}),
                       ("/v3/auth/role/get", {"role": "app"}),  # her role: allowed
                       ("/v3/auth/role/get", {"role": "root"})]:
        p.same(path, body)
    login(p, "root", "rootpw")
    p.same("/v3/auth/user/delete", {"name": "root"})
    p.same("/v3/auth/role/delete", {"role": "root"})
    p.same("/v3/auth/user/revoke", {"name": "root", "role": "root"})
    p.same("/v3/auth/user/list", {})
    p.same("/v3/auth/disable", {})
    as_nobody(p)
    p.same("/v3/kv/put", {"key": b64("open"), "value": b64("again")})


def test_every_path_is_checked_for_an_allowed_and_a_denied_user(pair):
    p = pair
    setup_users(p)
    p.same("/v3/auth/enable", {})
    login(p, "root", "rootpw")
    p.same("/v3/lease/grant", {"ID": "7000", "TTL": "60"})
    p.same("/v3/kv/put", {"key": b64("secret"), "value": b64("s"), "lease": "7000"})
    p.same("/v3/kv/put", {"key": b64("ro"), "value": b64("r")})
    for user, password in [("alice", "alicepw"), ("bob", "bobpw")]:
        login(p, user, password)
        # KV: keys, prefixes, ranges, prev_kv, outside the permission.
        p.same("/v3/kv/put", {"key": b64("app/a"), "value": b64(user)})
        p.same("/v3/kv/put", {"key": b64("app/a"), "value": b64(user), "prev_kv": True})
        p.same("/v3/kv/put", {"key": b64("wo"), "value": b64("w")})
        p.same("/v3/kv/put", {"key": b64("wo"), "value": b64("w"), "prev_kv": True})
        p.same("/v3/kv/put", {"key": b64("ro"), "value": b64("x")})
        p.same("/v3/kv/range", {"key": b64("ro")})
        p.same("/v3/kv/range", {"key": b64("app/"), "range_end": b64("app0")})
        p.same("/v3/kv/range", {"key": b64("app/a"), "range_end": b64("app/b")})
        p.same("/v3/kv/range", {"key": b64("app/"), "range_end": b64("app1")})
        p.same("/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0")})
        p.same("/v3/kv/range", {"key": b64("wo")})
        p.same("/v3/kv/deleterange", {"key": b64("wo")})
        p.same("/v3/kv/deleterange", {"key": b64("app/"), "range_end": b64("app0"), "prev_kv": True})
        p.same("/v3/kv/deleterange", {"key": b64("ro")})
        # Txn: compares read, every op of both branches, nested txns.
        p.same("/v3/kv/txn", {"compare": [{"key": b64("ro"), "target": "VERSION", "version": 0,
                                           "result": "GREATER"}],
                              "success": [{"request_put": {"key": b64("app/t"), "value": b64("1")}}],
                              "failure": [{"request_range": {"key": b64("app/t")}}]})
        p.same("/v3/kv/txn", {"compare": [{"key": b64("secret"), "target": "VERSION",
                                           "version": 0, "result": "GREATER"}]})
        p.same("/v3/kv/txn", {"success": [{"request_range": {"key": b64("app/t")}}],
                              "failure": [{"request_put": {"key": b64("other"), "value": b64("1")}}]})
        # etcd 3.4 does not look inside a nested txn: it lets anyone delete
        # `secret` that way (later etcds check it, as Keel does).
        keel_only(p, "/v3/kv/txn", {"success": [{"request_txn": {"success": [
            {"request_delete_range": {"key": b64("secret")}}]}}]},
            403, "etcdserver: permission denied")
        p.same("/v3/kv/txn", {"success": [{"request_range": {"key": b64("ro")}}]})
        # Leases: granting is free; attaching or revoking a lease whose keys
        # one may not write is not.
        p.same("/v3/lease/grant", {"ID": "7100", "TTL": "60"})
        p.same("/v3/kv/put", {"key": b64("app/l"), "value": b64("1"), "lease": "7100"})
        p.same("/v3/kv/put", {"key": b64("app/s"), "value": b64("1"), "lease": "7000"})
        p.same("/v3/lease/revoke", {"ID": "7000"})
        p.same("/v3/lease/revoke", {"ID": "7100"})
        # Maintenance and cluster administration: root only.
        # (etcd 3.4 answers these with code Unknown and "auth: permission
        # denied", an error it forgot to map; later etcds and Keel answer
        # PermissionDenied.)
        for path, body in [("/v3/maintenance/defragment", {}), ("/v3/maintenance/hash", {}),
                           ("/v3/maintenance/alarm", {"action": "ACTIVATE", "alarm": "NOSPACE",
                                                      "memberID": "1"}),
                           ("/v3/cluster/member/add", {"peerURLs": ["http://127.0.0.1:1"]})]:
            keel_only(p, path, body, 403, "etcdserver: permission denied")
        # Watch: created and canceled with etcd's reason when denied.
        for key in ["app/", "secret"]:
            p.same_stream("/v3/watch", [{"create_request": {"key": b64(key)}}],
                          lambda ls: len(ls) >= 1)
    # Keel's answers that etcd 3.4 does not give (later etcd's): status
    # needs a user, /v3/auth/status exists and needs root.
    as_nobody(p)
    status, body = p.post(p.keel, "/v3/maintenance/status", {})
    assert status == 400 and body["message"] == "etcdserver: user name is empty", body
    for user, password, want in [("alice", "alicepw", 403), ("root", "rootpw", 200)]:
        status, b = p.post(p.keel, "/v3/auth/authenticate", {"name": user, "password": password})
        p.tokens[p.keel] = b["token"]
        status, body = p.post(p.keel, "/v3/auth/status", {})
        assert status == want, body
    assert body["enabled"] is True and int(body["authRevision"]) > 1, body


def test_jwt_tokens_survive_a_restart_and_age_with_the_auth_store(make_node, tmp_path):
    """--auth-token jwt,... (etcd's JWT provider): a signed token that any
    member checks with the public key, so a kill -9 does not end it; one
    issued before an auth change is refused as old, and a forged one as
    invalid."""
    import base64 as b
    import json as j
    import subprocess

    import requests

    key, pub = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True)
    flags = [*FAST_BCRYPT, "--auth-token", f"jwt,pub-key={pub},priv-key={key},sign-method=ES256,ttl=10m"]
    n = make_node(extra=flags).start()
    url = f"http://{n.etcd}"

    def post(path, body, token=None):
        r = requests.post(url + path, json=body, headers={"Authorization": token} if token else {},
                          timeout=10)
        return r.status_code, r.json()

    for path, body in [("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
                       ("/v3/auth/role/add", {"name": "root"}),
                       ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                       ("/v3/auth/enable", {})]:
        assert post(path, body)[0] == 200
    status, body = post("/v3/auth/authenticate", {"name": "root", "password": "rootpw"})
    token = body["token"]
    header, claims, _ = token.split(".")
    assert j.loads(b.urlsafe_b64decode(header + "==")) == {"alg": "ES256", "typ": "JWT"}
    assert j.loads(b.urlsafe_b64decode(claims + "=="))["username"] == "root"
    assert post("/v3/kv/put", {"key": b64("k"), "value": b64("v")}, token)[0] == 200
    n.kill9()
    n = make_node(etcd_port=n.etcd_port, extra=flags).start()
    got = post("/v3/kv/range", {"key": b64("k")}, token)
    assert got[1].get("kvs", [{}])[0].get("value") == b64("v"), got
    # A forged claim: invalid. An auth change: the token is old.
    forged = ".".join([header, b.urlsafe_b64encode(
        b'{"username":"root","revision":99,"exp":9999999999}').decode().rstrip("="), token.split(".")[2]])
    assert post("/v3/kv/range", {"key": b64("k")}, forged) == (401, {
        "error": "etcdserver: invalid auth token", "message": "etcdserver: invalid auth token", "code": 16})
    assert post("/v3/auth/role/add", {"name": "other"}, token)[0] == 200
    status, body = post("/v3/kv/range", {"key": b64("k")}, token)
    assert (status, body["message"]) == (400, "etcdserver: revision of auth store is old"), body
