"""No stalls across faces (issue 34, item 4).

Committed Raft entries are applied on their own thread (as etcd applies in
its own goroutine, TiKV in an apply pool), and async code that waits for the
etcd store while a long apply holds it hands its tokio worker's other tasks
to another thread. So one long apply (a range delete of 150 000 keys of
1 KiB, with a watcher subscribed, which makes the apply read every deleted
value: seconds) holds up neither Raft (heartbeats, votes, commits go on) nor
the Kafka face, and a Kafka partition leader killed meanwhile fails over in
its normal time.
"""
import concurrent.futures
import subprocess
import threading
import time

import etcd3
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from conftest import wait_until
from etcd_cluster import ETCDCTL_ENV, etcdctl
from test_kafka_replication import SESSION_MS, create, full_isr, kafka_cluster, partitions

KEYS = 150_000
VALUE = b"v" * 1024
BATCH = 128  # etcd's --max-txn-ops


def load(endpoint, prefix, n):
    """`n` keys of 1 KiB under `prefix`, in transactions of 128 puts."""
    host, port = endpoint.split(":")
    c = etcd3.client(host=host, port=int(port), timeout=60)

    def batch(start):
        ops = [c.transactions.put(f"{prefix}{i:06d}", VALUE) for i in range(start, min(start + BATCH, n))]
        ok, _ = c.transaction(compare=[], success=ops, failure=[])
        assert ok

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(batch, s) for s in range(0, n, BATCH)]:
            f.result()
    c.close()


def produce_one(node, topic, partition):
    """Seconds until one acks=all record to `partition` is acknowledged by
    `node`'s broker (None if it failed)."""
    p = Producer({"bootstrap.servers": f"127.0.0.1:{node.kafka_port}", "acks": "all",
                  "message.timeout.ms": 10000})
    out = []
    start = time.monotonic()
    p.produce(topic, value=b"x", partition=partition,
              on_delivery=lambda err, msg: out.append((err, time.monotonic() - start)))
    p.flush(15)
    assert out and out[0][0] is None, out
    return out[0][1]


def test_a_long_apply_stalls_neither_raft_nor_kafka(tmp_path):
    with kafka_cluster(tmp_path, 3, ["--broker-session-timeout-ms", str(SESSION_MS),
                                     "--replica-lag-time-max-ms", "5000"]) as c:
        leader = c.wait_leader()
        lead = c.nodes[leader]
        topic = "orders"
        create(lead, NewTopic(topic, 3, 3))
        wait_until(lambda: full_isr(c, topic), timeout=30, what="every ISR whole")
        view = partitions(lead, topic)
        # The victim: a partition leader that is not the Raft leader (whose
        # death would change the term for its own reasons); the witness: the
        # third node, whose view of the metadata says when leadership moved.
        part, victim = next((p, v[0]) for p, v in sorted(view.items()) if v[0] != leader)
        witness = c.nodes[next(i for i in c.nodes if i not in (leader, victim))]
        mine = next((p for p, v in sorted(view.items()) if v[0] == leader), part)
        produce_one(lead, topic, mine)  # the producer path warmed up

        started = time.monotonic()
        load(lead.endpoint, "bulk/", KEYS)
        print(f"loaded {KEYS} keys of 1 KiB in {time.monotonic() - started:.1f} s")

        # A watcher on the Raft leader: its apply of the delete reads every
        # deleted value (the slow path), while the followers' does not.
        watcher = subprocess.Popen(["etcdctl", f"--endpoints={lead.endpoint}", "watch", "elsewhere"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ETCDCTL_ENV)
        try:
            lines = []
            threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True).start()
            # etcdctl subscribes some time after it starts (seconds on a busy
            # machine), and a put before that is not an event it sees: put
            # again until one is.
            last_put = [0.0]

            def subscribed():
                if time.monotonic() - last_put[0] > 0.5:
                    etcdctl(lead.endpoint, "put", "elsewhere", "1")
                    last_put[0] = time.monotonic()
                return any(l.strip() == "elsewhere" for l in lines)
            wait_until(subscribed, timeout=30, what="the watcher to be subscribed")
            before = {i: n.status() for i, n in c.nodes.items()}
            assert len({s["term"] for s in before.values()}) == 1, before

            deleted = {}

            def delete():
                t = time.monotonic()
                deleted["out"] = etcdctl(witness.endpoint, "del", "--prefix", "bulk/", timeout=120).strip()
                deleted["seconds"] = time.monotonic() - t
            deleter = threading.Thread(target=delete)
            # Proposals through the witness while the delete is applied: the
            # Raft leader commits them while its apply thread is busy.
            stop = threading.Event()

            def propose():
                i = 0
                while not stop.is_set():
                    etcdctl(witness.endpoint, "put", f"side/{i % 10}", str(i))
                    i += 1
            proposer = threading.Thread(target=propose)
            deleter.start()
            proposer.start()
            try:
                # Raft goes on during the apply: the leader commits past what
                # it has applied (on the Raft thread's old apply, commit never
                # passed applied: both moved in the same round).
                def busy():
                    s = lead.status()
                    return s["commit"] > s["applied"] + 1 and s
                during = wait_until(busy, timeout=30, what="the leader to commit past a long apply")
                seen_busy = time.monotonic()
                caught_up = {}

                def watch_apply():
                    wait_until(lambda: lead.status()["applied"] >= during["commit"], timeout=60,
                               what="the leader's apply to catch up")
                    caught_up["seconds"] = time.monotonic() - seen_busy
                applier = threading.Thread(target=watch_apply)
                applier.start()
                # The Kafka face answers while the Raft leader's node applies.
                answered = produce_one(lead, topic, mine)
                still = lead.status()["applied"] < during["commit"]
                c.nodes[victim].kill9()
                killed = time.monotonic()
                wait_until(lambda: partitions(witness, topic)[part][0] not in (victim, -1),
                           timeout=SESSION_MS / 1000 + 20, what=f"partition {part} to leave broker {victim}")
                failover = time.monotonic() - killed
                deleter.join(timeout=120)
                applier.join(timeout=60)
            finally:
                stop.set()
                proposer.join(timeout=30)
            assert deleted.get("out") == str(KEYS), deleted
            after = {i: n.status() for i, n in c.nodes.items() if i != victim}
        finally:
            watcher.kill()
            watcher.wait()
        print(f"delete of {KEYS} keys answered in {deleted['seconds']:.2f} s by a node without a watcher; "
              f"the leader (with one) committed {during['commit'] - during['applied']} entries past its apply, "
              f"which caught up {caught_up.get('seconds', -1):.2f} s later; an acks=all produce to it "
              f"took {answered * 1000:.0f} ms ({'during' if still else 'around'} the apply); "
              f"partition {part} failed over {failover:.2f} s after broker {victim}'s kill -9 "
              f"(session {SESSION_MS} ms)")
        # No Raft leader change: same leader, same term, on every survivor.
        assert all(s["term"] == before[leader]["term"] and s["leader"] == leader for s in after.values()), \
            (before, after)
        assert answered < 1.0, answered
        # Fencing takes a session; the election after it well under a second.
        assert failover < SESSION_MS / 1000 + 2.5, failover
        assert produce_one(witness, topic, part) < 5
