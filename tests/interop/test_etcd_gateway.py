"""Differential test of etcd's HTTP/JSON gateway: the same requests go to
`keel dev` and to Debian's etcd 3.4, each started fresh, and the answers are
compared field by field: HTTP status, and the JSON body with the response
headers' ids, term and revision set aside (every other revision must match,
since both stores start at revision 1 and see the same writes). Only fields
that cannot agree (member ids, TTLs counting down, hashes, database sizes)
are compared by presence alone.

Auth's endpoints are compared in test_etcd_auth.py."""
import base64
import json
import subprocess

import pytest
import requests

from conftest import Node, free_port, wait_until


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class Etcd:
    """Debian's etcd 3.4, a single member, on ports of its own."""

    def __init__(self, base, extra=()):
        self.dir = base / "etcd"
        self.extra = list(extra)
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"

    def start(self):
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.log = open(self.dir.parent / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "default", "--data-dir", str(self.dir),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}", *self.extra],
            stdout=self.log, stderr=self.log)
        wait_until(self._healthy, what="etcd 3.4 to serve")
        return self

    def _healthy(self):
        try:
            return requests.get(self.url + "/health", timeout=1).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture
def make_pair(tmp_path):
    started = []

    def make(keel_extra=(), etcd_extra=()):
        etcd = Etcd(tmp_path, etcd_extra).start()
        started.append(etcd)
        keel = Node(tmp_path / "keel", extra=keel_extra).start()
        started.append(keel)
        return Pair(f"http://{keel.etcd}", etcd.url)

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def pair(make_pair):
    return make_pair()


HEADER_FIELDS = {"cluster_id", "member_id", "revision", "raft_term"}


def normalize(v, loose):
    """The body with the header's ids set aside and `loose` fields reduced to
    their presence."""
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if k == "header" and isinstance(x, dict):
                x = {hk: hv for hk, hv in x.items() if hk not in HEADER_FIELDS}
                if not x:
                    continue
            out[k] = "<present>" if k in loose else normalize(x, loose)
        return out
    if isinstance(v, list):
        return [normalize(x, loose) for x in v]
    return v


class Pair:
    def __init__(self, keel, etcd):
        self.keel, self.etcd = keel, etcd
        self.s = requests.Session()
        # Each side's auth token, sent as the Authorization header when set.
        self.tokens = {}

    def headers(self, base):
        t = self.tokens.get(base)
        return {"Authorization": t} if t else {}

    def post(self, base, path, body):
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        r = self.s.post(base + path, data=data, timeout=10, headers=self.headers(base))
        try:
            parsed = r.json()
        except ValueError:
            parsed = None
        return r.status_code, parsed

    def same(self, path, body=None, loose=(), message=True, ignore=(), unordered=()):
        """Sends one unary request to both; their answers must agree. Returns
        etcd's body. Fields in `ignore` are dropped from both, lists under
        `unordered` keys compared as sets."""
        body = {} if body is None else body
        ks, kb = self.post(self.keel, path, body)
        es, eb = self.post(self.etcd, path, body)
        for b in (kb, eb):
            for k in ignore:
                (b or {}).pop(k, None)
            for k in unordered:
                if isinstance((b or {}).get(k), list):
                    b[k] = sorted(b[k], key=json.dumps)
        assert ks == es, f"{path} {body}: HTTP {ks} from keel, {es} from etcd ({kb} / {eb})"
        if eb is not None and "error" in eb and not message:
            # A malformed body: Go's and serde's parser messages differ; the
            # code and status must not.
            assert kb is not None and kb.get("code") == eb["code"], f"{path}: {kb} vs {eb}"
            return eb
        assert normalize(kb, set(loose)) == normalize(eb, set(loose)), \
            f"{path} {body}:\n keel {kb}\n etcd {eb}"
        return eb

    def stream(self, base, path, body, want, then=None, timeout=10):
        """Opens a streaming call and reads chunks until `want(lines)` holds;
        `then` runs once the first chunk (the stream is set up) arrived.
        Reads on this thread: closing a response another thread is reading
        waits out that read."""
        data = body if isinstance(body, str) else "".join(json.dumps(b) for b in body)
        r = requests.post(base + path, data=data, stream=True, timeout=(5, timeout),
                          headers=self.headers(base))
        lines = []
        try:
            for line in r.iter_lines(chunk_size=None):
                if not line.strip():
                    continue
                lines.append(json.loads(line))
                if len(lines) == 1 and then:
                    then()
                if want(lines):
                    break
        except requests.RequestException:
            pass  # the stream went quiet for `timeout` seconds
        finally:
            r.close()
        return r.status_code, lines

    def same_stream(self, path, body, want, then=None, loose=()):
        ks, kl = self.stream(self.keel, path, body, want, then=(lambda: then(self.keel)) if then else None)
        es, el = self.stream(self.etcd, path, body, want, then=(lambda: then(self.etcd)) if then else None)
        assert ks == es, f"{path}: HTTP {ks} from keel, {es} from etcd"
        assert want(el), f"etcd's stream ended early: {el}"
        assert normalize(kl, set(loose)) == normalize(el, set(loose)), f"{path}:\n keel {kl}\n etcd {el}"
        return el


def events_of(lines):
    return [e for line in lines for e in line.get("result", {}).get("events", [])]


def test_kv_txn_and_compaction_answer_as_etcd(pair):
    p = pair
    p.same("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")})
    p.same("/v3/kv/put", {"key": b64("foo"), "value": b64("baz"), "prev_kv": True})
    p.same("/v3/kv/range", {"key": b64("foo")})
    for k, v in [("/p/a", "1"), ("/p/b", "2"), ("/p/c", "3")]:
        p.same("/v3/kv/put", {"key": b64(k), "value": b64(v)})
    # lowerCamelCase and the proto's names, enums by name and by number,
    # 64-bit integers as numbers and as strings, unknown fields: all accepted.
    p.same("/v3/kv/range", {"key": b64("/p/"), "range_end": b64("/p0"), "limit": 2})
    p.same("/v3/kv/range", {"key": b64("/p/"), "rangeEnd": b64("/p0"), "limit": "2", "bogus": [1]})
    p.same("/v3/kv/range", {"key": b64("/p/"), "range_end": b64("/p0"), "keys_only": True,
                            "sort_order": "DESCEND", "sort_target": "KEY"})
    p.same("/v3/kv/range", {"key": b64("/p/"), "range_end": b64("/p0"), "count_only": True})
    p.same("/v3/kv/range", {"key": b64("/p/"), "range_end": b64("/p0"), "sort_order": 2,
                            "sort_target": 3, "serializable": True})
    p.same("/v3/kv/range", {"key": b64("\0"), "range_end": b64("\0"), "keys_only": True})
    p.same("/v3/kv/range", {"key": b64("foo"), "revision": "2"})
    p.same("/v3/kv/range", {"key": b64("/p/"), "range_end": b64("/p0"),
                            "min_mod_revision": 5, "max_create_revision": "5"})
    # Txn: a compare that holds, one that does not, every request kind.
    txn = {"compare": [{"key": b64("foo"), "result": "EQUAL", "target": "VALUE", "value": b64("baz")},
                       {"key": b64("/p/a"), "target": "VERSION", "result": "GREATER", "version": 0}],
           "success": [{"request_put": {"key": b64("foo"), "value": b64("qux"), "prev_kv": True}},
                       {"request_range": {"key": b64("/p/"), "range_end": b64("/p0")}},
                       {"request_delete_range": {"key": b64("/p/c"), "prev_kv": True}}],
           "failure": [{"request_range": {"key": b64("foo")}}]}
    p.same("/v3/kv/txn", txn)
    p.same("/v3/kv/txn", txn)
    p.same("/v3/kv/txn", {"compare": [{"key": b64("foo"), "target": "MOD", "result": "LESS",
                                       "mod_revision": "100"}],
                          "success": [{"request_txn": {"success": [{"request_range": {"key": b64("foo")}}]}}]})
    p.same("/v3/kv/txn", {})
    p.same("/v3/kv/deleterange", {"key": b64("/p/"), "range_end": b64("/p0"), "prev_kv": True})
    p.same("/v3/kv/deleterange", {"key": b64("nothing")})
    # Errors a client can cause, with etcd's codes, statuses and messages.
    p.same("/v3/kv/put", {"value": b64("x")})
    p.same("/v3/kv/put", {"key": b64("k"), "value": b64("v"), "lease": "12345"})
    p.same("/v3/kv/put", {"key": b64("k"), "ignore_value": True})
    p.same("/v3/kv/range", {"key": b64("foo"), "revision": "1000"})
    p.same("/v3/kv/txn", {"success": [{"request_put": {"key": b64("d")}}, {"request_put": {"key": b64("d")}}]})
    p.same("/v3/kv/compaction", {"revision": "1000"})
    p.same("/v3/kv/compaction", {"revision": "4", "physical": True})
    p.same("/v3/kv/range", {"key": b64("foo"), "revision": "3"})
    p.same("/v3/kv/compaction", {"revision": "3"})
    # Hash and HashKV share a path; etcd serves Hash there.
    body = p.same("/v3/maintenance/hash", {}, loose=("hash",))
    assert "hash" in body


def test_malformed_bodies_get_etcds_code_and_change_nothing(pair):
    p = pair
    p.same("/v3/kv/put", {"key": b64("keep"), "value": b64("1")})
    # (Not Lock or Campaign: with no lease given, etcd's recipes grant one.)
    for path in ["/v3/kv/range", "/v3/kv/put", "/v3/kv/txn", "/v3/lease/grant",
                 "/v3/cluster/member/add", "/v3/election/leader", "/v3/auth/user/add",
                 "/v3/auth/role/grant", "/v3/auth/authenticate"]:
        for body in ['{"key":', "[1,2]", '{"key":"!!notbase64"}', '{"keys_only":"yes"}',
                     '{"lease":"abc"}', '{"key": "a2VlcA==", "value": 5}', "nonsense"]:
            p.same(path, body, message=False, loose=("ID",))
    # The streaming calls refuse a malformed first message with code 2.
    p.same("/v3/watch", '{"create_request":', message=False)
    p.same("/v3/lease/keepalive", '{"ID":', message=False)
    p.same("/v3/kv/range", {"key": b64("keep")})
    p.same("/v3/auth/user/list", {})  # no user was added by the bad bodies
    # Paths and methods the gateway does not serve.
    assert p.post(p.keel, "/v3/kv/nothing", {})[0] == p.post(p.etcd, "/v3/kv/nothing", {})[0] == 404
    assert p.s.get(p.keel + "/v3/kv/range").status_code == p.s.get(p.etcd + "/v3/kv/range").status_code
    # The older path prefix that etcd 3.4 still serves.
    p.same("/v3beta/kv/range", {"key": b64("keep")})


def test_leases_answer_as_etcd(pair):
    p = pair
    p.same("/v3/lease/grant", {"ID": "1000", "TTL": "60"})
    p.same("/v3/lease/grant", {"ID": 1000, "TTL": 60})
    p.same("/v3/lease/grant", {"ID": "2000", "TTL": 1})
    p.same("/v3/kv/put", {"key": b64("eph"), "value": b64("v"), "lease": "1000"})
    p.same("/v3/lease/timetolive", {"ID": "1000", "keys": True}, loose=("TTL",))
    p.same("/v3/kv/lease/timetolive", {"ID": "1000"}, loose=("TTL",))
    p.same("/v3/lease/timetolive", {"ID": "999"})
    # etcd lists leases in Go's map order.
    p.same("/v3/lease/leases", {}, unordered=("leases",))
    p.same("/v3/kv/lease/leases", {}, unordered=("leases",))
    # KeepAlive: one answer per request in the body, then the stream ends.
    p.same_stream("/v3/lease/keepalive", [{"ID": "1000"}, {"ID": 1000}], lambda ls: len(ls) >= 2)
    p.same_stream("/v3/lease/keepalive", [{"ID": "999"}], lambda ls: len(ls) >= 1)
    p.same("/v3/lease/revoke", {"ID": "1000"})
    p.same("/v3/kv/range", {"key": b64("eph")})
    p.same("/v3/lease/revoke", {"ID": "1000"})
    p.same("/v3/kv/lease/revoke", {"ID": "2000"})


def test_watch_streams_answer_as_etcd(pair):
    p = pair
    for v in ["1", "2", "3"]:
        p.same("/v3/kv/put", {"key": b64("w/a"), "value": b64(v)})
    p.same("/v3/kv/deleterange", {"key": b64("w/a")})
    # History from revision 1, with previous values; compared event by event
    # (how events are split into messages may differ), then the messages.
    want_all = lambda ls: len(events_of(ls)) >= 4
    create = {"create_request": {"key": b64("w/"), "range_end": b64("w0"), "start_revision": "1",
                                 "prev_kv": True}}
    el = p.same_stream("/v3/watch", [create], want_all)
    assert [e.get("type", "PUT") for e in events_of(el)] == ["PUT", "PUT", "PUT", "DELETE"]
    # Filters: deletes only.
    p.same_stream("/v3/watch", [{"create_request": {"key": b64("w/a"), "start_revision": 1,
                                                    "filters": ["NOPUT"]}}],
                  lambda ls: len(events_of(ls)) >= 1)
    # A live watch: the change made after it is created arrives as it happens.
    p.same_stream("/v3/watch", [{"create_request": {"key": b64("live")}}],
                  lambda ls: len(events_of(ls)) >= 1,
                  then=lambda base: p.post(base, "/v3/kv/put", {"key": b64("live"), "value": b64("x")}))
    # Cancel and progress requests in the same body, after the create.
    p.same_stream("/v3/watch", [{"create_request": {"key": b64("c"), "watch_id": 7}},
                                {"cancel_request": {"watch_id": 7}}], lambda ls: len(ls) >= 2)
    p.same_stream("/v3/watch", [{"create_request": {"key": b64("c")}}, {"progress_request": {}}],
                  lambda ls: len(ls) >= 2)
    # Refused creates: no key, or history that compaction removed.
    p.same_stream("/v3/watch", [{"create_request": {}}], lambda ls: len(ls) >= 1)
    p.same("/v3/kv/compaction", {"revision": "3"})
    p.same_stream("/v3/watch", [{"create_request": {"key": b64("w/a"), "start_revision": "1"}}],
                  lambda ls: len(ls) >= 2)


def test_cluster_and_maintenance_answer_as_etcd(pair):
    p = pair
    p.same("/v3/cluster/member/list", {}, loose=("ID", "name", "peerURLs", "clientURLs"))
    # dbSizeInUse: bbolt's pages in use, never 0 in etcd; Keel counts the
    # bytes of live values, 0 (so left out) in an empty store.
    p.same("/v3/maintenance/status", {},
           loose=("version", "dbSize", "leader", "raftIndex", "raftTerm", "raftAppliedIndex"),
           ignore=("dbSizeInUse",))
    p.same("/v3/maintenance/alarm", {"action": "GET"})
    p.same("/v3/maintenance/alarm", {"action": "DEACTIVATE", "alarm": "NOSPACE"})
    p.same("/v3/maintenance/defragment", {})
    # A snapshot streams blobs until nothing remains; the bytes (bbolt's file
    # or Keel's state) and how they are cut into messages differ.
    for base in (p.keel, p.etcd):
        status, lines = p.stream(base, "/v3/maintenance/snapshot", [{}], lambda ls: any(
            l.get("result", {}).get("remaining_bytes", "0") == "0" for l in ls))
        assert status == 200 and lines and all("blob" in l["result"] for l in lines), (base, lines[:1])
        assert lines[-1]["result"].get("remaining_bytes", "0") == "0"
    # Membership: a learner that never starts is added, promoted (refused:
    # not in sync), updated and removed.
    spare = f"http://127.0.0.1:{free_port()}"
    added = {}
    for side in ("keel", "etcd"):
        base = getattr(p, side)
        status, body = p.post(base, "/v3/cluster/member/add", {"peerURLs": [spare], "isLearner": True})
        assert status == 200, (side, body)
        assert body["member"]["isLearner"] is True and body["member"]["peerURLs"] == [spare]
        assert len(body["members"]) == 2
        added[side] = body["member"]["ID"]
    for path, extra in [("/v3/cluster/member/promote", {}),
                        ("/v3/cluster/member/update", {"peerURLs": [spare + "1"]}),
                        ("/v3/cluster/member/remove", {}), ("/v3/cluster/member/remove", {})]:
        ks, kb = p.post(p.keel, path, {"ID": added["keel"], **extra})
        es, eb = p.post(p.etcd, path, {"ID": added["etcd"], **extra})
        assert ks == es, f"{path}: {kb} vs {eb}"
        if path.endswith("update"):
            # etcd 3.4 lists an updated learner as a voter (its MemberUpdate
            # rebuilds the member without IsLearner); Keel keeps it a learner.
            urls = lambda body, side: [m["peerURLs"] for m in body["members"] if m["ID"] == added[side]]
            assert urls(kb, "keel") == urls(eb, "etcd") == [[spare + "1"]]
            continue
        loose = {"ID", "name", "peerURLs", "clientURLs"}
        assert normalize(kb, loose) == normalize(eb, loose), f"{path}: {kb} vs {eb}"
    # Promoting a voter is refused with FailedPrecondition, HTTP 412.
    for side in ("keel", "etcd"):
        base = getattr(p, side)
        me = p.post(base, "/v3/cluster/member/list", {})[1]["members"][0]["ID"]
        status, body = p.post(base, "/v3/cluster/member/promote", {"ID": me})
        assert status == 412 and body["code"] == 9, (side, body)
        assert body["message"] == "etcdserver: can only promote a learner member"


def test_lock_and_election_answer_as_etcd(pair):
    p = pair
    p.same("/v3/lease/grant", {"ID": "2000", "TTL": "60"})
    lock = p.same("/v3/lock/lock", {"name": b64("L"), "lease": "2000"})
    p.same("/v3/kv/range", {"key": lock["key"]})
    p.same("/v3/lock/unlock", {"key": lock["key"]})
    p.same("/v3/lock/lock", {"name": b64("L"), "lease": "999"})
    camp = p.same("/v3/election/campaign", {"name": b64("E"), "lease": "2000", "value": b64("v1")})
    p.same("/v3/election/leader", {"name": b64("E")})
    p.same("/v3/election/proclaim", {"leader": camp["leader"], "value": b64("v2")})
    p.same_stream("/v3/election/observe", [{"name": b64("E")}], lambda ls: len(ls) >= 1)
    p.same("/v3/election/resign", {"leader": camp["leader"]})
    p.same("/v3/election/leader", {"name": b64("E")})
    p.same("/v3/election/proclaim", {"leader": camp["leader"], "value": b64("v3")})


def test_watch_progress_notifications_answer_as_etcd(make_pair):
    """progress_notify: a watch that was sent nothing for an interval hears the
    current revision (Kubernetes' watch cache depends on it), with the
    interval set as etcd's --experimental-watch-progress-notify-interval."""
    p = make_pair(keel_extra=["--watch-progress-notify-interval-ms", "300"],
                  etcd_extra=["--experimental-watch-progress-notify-interval", "300ms"])
    p.same("/v3/kv/put", {"key": b64("other"), "value": b64("1")})
    create = [{"create_request": {"key": b64("idle"), "progress_notify": True}}]
    el = p.same_stream("/v3/watch", create, lambda ls: len(ls) >= 3)
    assert all("events" not in l["result"] for l in el[1:])
    # Keel's notification carries the store's revision.
    _, kl = p.stream(p.keel, "/v3/watch", create, lambda ls: len(ls) >= 2)
    current = p.post(p.keel, "/v3/kv/range", {"key": b64("other")})[1]["header"]["revision"]
    assert kl[1]["result"]["header"]["revision"] == current
