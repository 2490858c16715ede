"""OpenStack's etcd3gw (PyPI), which talks to etcd only through its HTTP/JSON
gateway, runs its normal workflow against `keel dev`: put, get, prefix reads,
a compare-and-swap, leases with refresh and expiry, watches, and locks."""
import threading

import etcd3gw
import pytest

from conftest import wait_until


@pytest.fixture
def client(node):
    c = etcd3gw.client(host="127.0.0.1", port=node.etcd_port, timeout=10)
    yield c
    c.session.close()


def test_kv_and_prefix_reads(client):
    # /version discovery picks the /v3/ gateway, as it does for etcd 3.4.
    assert client.api_path == "/v3/"
    assert client.put("/svc/a", "1") is True
    assert client.put("/svc/b", "2") is True
    assert client.get("/svc/a") == [b"1"]
    assert client.get("/svc/missing") == []
    got = client.get("/svc/a", metadata=True)
    value, meta = got[0]
    assert value == b"1" and meta["key"] == b"/svc/a" and int(meta["version"]) == 1
    prefix = sorted((v, m["key"]) for v, m in client.get_prefix("/svc/"))
    assert prefix == [(b"1", b"/svc/a"), (b"2", b"/svc/b")]
    assert [v for v, _ in client.get_all()] == [b"1", b"2"]
    # Compare-and-swap by value, both outcomes; create only if absent.
    assert client.replace("/svc/a", "1", "10") is True
    assert client.replace("/svc/a", "1", "11") is False
    assert client.get("/svc/a") == [b"10"]
    assert client.create("/svc/a", "x") is False
    assert client.create("/svc/c", "3") is True
    assert client.delete("/svc/c") is True
    assert client.delete("/svc/c") is False
    assert client.delete_prefix("/svc/") is True
    assert client.get_prefix("/svc/") == []
    status = client.status()
    assert status["version"] and int(status["header"]["revision"]) > 0
    members = client.members()
    assert len(members) == 1 and members[0]["clientURLs"]


def test_leases_refresh_expire_and_take_their_keys(client):
    lease = client.lease(ttl=5)
    assert client.put("/eph/k", "v", lease=lease) is True
    assert lease.keys() == [b"/eph/k"]
    ttl = lease.ttl()
    assert 0 < ttl <= 5
    # keepalive through the streaming endpoint answers the renewed TTL.
    assert lease.refresh() == 5
    other = client.lease(ttl=5)
    assert other.revoke() is True
    assert lease.revoke() is True
    assert client.get("/eph/k") == []
    # A lease left alone expires, and its key with it (the leader's lessor).
    short = client.lease(ttl=3)
    client.put("/eph/short", "v", lease=short)
    wait_until(lambda: client.get("/eph/short") == [], timeout=15, what="lease expiry")
    assert short.ttl() == -1


def revision(client):
    return int(client.status()["header"]["revision"])


def test_watch_sees_each_change_as_it_happens(client):
    # From the next revision on, so no change can slip in before the watch is
    # created (etcd replays from start_revision).
    events, cancel = client.watch_prefix("/w/", start_revision=revision(client) + 1)
    seen = []
    done = threading.Event()

    def drain():
        for e in events:
            seen.append((e.get("type", "PUT"), e["kv"]["key"], e["kv"].get("value")))
            if len(seen) == 3:
                done.set()
                return

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    client.put("/w/a", "1")
    client.put("/other", "not watched")
    client.put("/w/a", "2")
    client.delete("/w/a")
    assert done.wait(10), f"watch saw only {seen}"
    assert seen == [("PUT", b"/w/a", b"1"), ("PUT", b"/w/a", b"2"), ("DELETE", b"/w/a", None)]
    cancel()
    t.join(5)
    # watch_once: the next change to one key.
    rev = revision(client)
    client.put("/w/once", "x")
    event = client.watch_once("/w/once", timeout=10, start_revision=rev + 1)
    assert event["kv"]["value"] == b"x"
    # A live watch: events written after it is created arrive one by one.
    events, cancel = client.watch("/w/live")
    got = []
    t = threading.Thread(target=lambda: got.append(next(events)), daemon=True)
    t.start()
    wait_until(lambda: client.put("/w/live", "y") and got, timeout=10, what="a live watch event")
    assert got[0]["kv"]["value"] == b"y"
    cancel()


def test_locks_exclude_each_other_and_release(client):
    first = client.lock("job", ttl=10)
    second = client.lock("job", ttl=10)
    assert first.acquire() is True
    assert first.is_acquired()
    assert second.acquire() is False
    assert first.refresh() == 10
    assert first.release() is True
    assert not first.is_acquired()
    assert second.acquire() is True
    assert second.release() is True
    with client.lock("ctx", ttl=10) as held:
        assert held.is_acquired()
    assert client.get("/locks/ctx") == []
