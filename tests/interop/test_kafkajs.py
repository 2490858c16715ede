"""KafkaJS, a third client with its own implementation of the protocol (pure
JavaScript: no librdkafka, no kafka-python), against the real keel binary."""
import json
import subprocess
from pathlib import Path

from conftest import KEEL
from kafka_history import History
from test_kafka_replication import read_all

JS = Path(__file__).parent / "js"


def kafkajs(node, *args, timeout=120):
    assert (JS / "node_modules" / "kafkajs").exists(), \
        "kafkajs is not installed: run scripts/test.sh, or npm ci in tests/interop/js"
    r = subprocess.run(["node", str(JS / "client.js"), node.bootstrap, *map(str, args)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def keel(node, *args):
    r = subprocess.run([str(KEEL), *args, "--brokers", node.bootstrap],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_kafkajs_admin_round_trip(node):
    out = kafkajs(node, "admin", "js-admin")
    assert out["created"] is True
    assert out["createdAgain"] is False, "an existing topic is TOPIC_ALREADY_EXISTS"
    assert out["badName"] == "INVALID_TOPIC_EXCEPTION"
    assert out["listed"] is True
    assert out["partitions"] == [[p, 1] for p in range(5)], "grown from 3 to 5, led by node 1"
    assert out["configs"] == {"retention.ms": "7200000", "cleanup.policy": "delete"}
    assert out["offsets"] == [[p, "0", "0"] for p in range(5)]
    assert (out["brokers"], out["controller"]) == ([1], 1)
    assert out["listedAfterDelete"] is False


def test_kafkajs_group_splits_partitions_and_resumes_after_kill9(make_node):
    node = make_node().start()
    keel(node, "topic", "create", "js-orders", "-p", "6")
    sent = kafkajs(node, "produce", "js-orders", 300, 0)["sent"]
    assert {e for _, _, e in sent} == {0}
    assert {p for p, _, _ in sent} == set(range(6)), "keys spread over every partition"

    out = kafkajs(node, "consume-split", "js-orders", "js-group", 300)
    shares = [{r[0] for r in got} for got in out["got"]]
    assert all(shares) and not (shares[0] & shares[1]), f"each member owns its own partitions: {shares}"
    assert shares[0] | shares[1] == set(range(6))
    records = [tuple(r) for got in out["got"] for r in got]
    assert len(records) == len(set(records)) == 300, "every record exactly once"
    assert sorted(int(v[1:]) for _, _, _, v, _ in records) == list(range(300))
    assert all(v == f"v{n}" for _, _, _, v, n in records), "headers kept"
    # Each partition's records come in offset order, from 0 up with no gap.
    for p in range(6):
        offsets = [o for q, o, _, _, _ in records if q == p]
        assert sorted(offsets) == list(range(len(offsets)))
    ends = {p: sum(1 for q, *_ in records if q == p) for p in range(6)}
    assert dict(out["committed"]) == ends, "the group committed what it read"
    assert out["state"] == "Empty"

    node.kill9()
    node = make_node(port=node.port).start()
    after = kafkajs(node, "produce", "js-orders", 20, 300)["sent"]
    assert {e for _, _, e in after} == {0}
    again = kafkajs(node, "consume", "js-orders", "js-group", 20)
    values = sorted(int(r[3][1:]) for r in again["got"][0])
    assert values == list(range(300, 320)), "after kill -9 the group resumes: nothing re-read, nothing skipped"

    # The whole history through the Kafka checker: KafkaJS answers a send
    # with its batch's base offset, not each record's, so acknowledgements
    # are unplaced (lost means in no partition of the final log).
    history = History()
    for j in range(320):
        history.send("js", f"v{j}")
        history.ack(f"v{j}", None, None)
    for m, got in enumerate(out["got"] + again["got"]):
        for p, o, _, v, _ in got:
            history.read(f"m{m}", p, o, v)
    final = read_all(None, "js-orders", 6, 320, through=node.bootstrap)
    faults, summary = history.check(final)
    assert not faults, f"{summary}: {faults}"
