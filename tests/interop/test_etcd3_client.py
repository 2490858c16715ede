"""The Python etcd3 client (0.12.0) against keel dev: its README's workflow,
including a lock held by a lease, as a user of that library writes it."""
import threading

import etcd3


def test_etcd3_readme_workflow_and_lock(node):
    host, port = node.etcd.split(":")
    etcd = etcd3.client(host=host, port=int(port), timeout=10)
    etcd.put("/key", "doot")
    value, meta = etcd.get("/key")
    assert value == b"doot" and meta.version == 1
    etcd.put("/key/a", "1")
    etcd.put("/key/b", "2")
    assert sorted(v for v, _ in etcd.get_prefix("/key/")) == [b"1", b"2"]
    # Compare-and-swap as the README shows it.
    ok, _ = etcd.transaction(
        compare=[etcd.transactions.value("/key") == "doot"],
        success=[etcd.transactions.put("/key", "dootdoot")],
        failure=[etcd.transactions.get("/key")],
    )
    assert ok and etcd.get("/key")[0] == b"dootdoot"
    ok, responses = etcd.transaction(
        compare=[etcd.transactions.version("/key") == 1],
        success=[etcd.transactions.put("/key", "never")],
        failure=[etcd.transactions.get("/key")],
    )
    assert not ok and responses[0][0][0] == b"dootdoot"
    # A lease-backed lock: exclusive while held, free after release.
    lock = etcd.lock("thing", ttl=10)
    assert lock.acquire(timeout=5)
    assert lock.is_acquired()
    other = etcd.lock("thing", ttl=10)
    assert not other.acquire(timeout=1)
    got = []
    t = threading.Thread(target=lambda: got.append(other.acquire(timeout=10)))
    t.start()
    lock.release()
    t.join()
    assert got == [True]
    other.release()
    # Watch: a put after the watch starts is delivered.
    events, cancel = etcd.watch("/watched")
    etcd.put("/watched", "hello")
    ev = next(events)
    cancel()
    assert ev.value == b"hello"
    lease = etcd.lease(30)
    etcd.put("/leased", "x", lease=lease)
    assert lease.remaining_ttl > 0 and lease.keys == [b"/leased"]
    lease.revoke()
    assert etcd.get("/leased")[0] is None
    etcd.delete_prefix("/key")
    assert etcd.get("/key")[0] is None
