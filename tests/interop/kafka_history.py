"""Jepsen's Kafka checker (Kyle Kingsbury's queue analyses of Redpanda, 2022,
and Bufstream and Kafka, 2024), for Keel's fault tests: producers and
consumers record what they did while faults happen, and `check` reads the
whole history afterwards together with the log as it finally stands.

Recorded, under one lock, in the order it happened:
- a send: (producer, partition or None, value), and later its answer: the
  (partition, offset) it was acknowledged at, or an error;
- a read: (consumer, partition, offset, value), in the order the consumer saw it;
- a commit the broker took: (group, consumer, partition, offset).

Found, each with examples:
- lost: acknowledged, and not in the final log at the offset it was
  acknowledged at;
- duplicated: one send at two offsets (in the final log or in any read);
- inconsistent offsets: one partition's offset seen holding two values (by
  two consumers, by one consumer at two times, or by a consumer and the
  final log);
- reordered: one producer's acknowledged sends to one partition whose
  offsets do not grow in the order it sent them;
- committed offsets went backwards: a group's commits for a partition;
- rewound past a commit: a member of a group reads an offset below what the
  group had committed for that partition before (a commit the cluster lost);
- skipped: a consumer, reading a partition forward, jumps over an offset the
  final log holds.
Reads of sends never acknowledged are counted, not faults: an answer lost to
a crash leaves a record the producer was told failed, or never heard about.
"""
import bisect
import threading
import time
from collections import defaultdict

from confluent_kafka import Consumer, KafkaException


class History:
    def __init__(self):
        self._lock = threading.Lock()
        self.sends = []  # (producer, partition or None, value), in send order
        self.acked = {}  # value -> (partition, offset)
        self.failed = {}  # value -> error
        self.events = []  # ("read", consumer, partition, offset, value) | ("commit", consumer, partition, offset, group)

    def send(self, producer, value, partition=None):
        with self._lock:
            self.sends.append((producer, partition, value))

    def ack(self, value, partition, offset):
        """`partition` and `offset` None: acknowledged, but the client does
        not say where (kcat's producer): lost then means in no partition of
        the final log, and the send is left out of the order check."""
        with self._lock:
            self.acked[value] = (partition, offset)

    def fail(self, value, err):
        with self._lock:
            self.failed[value] = err

    def read(self, consumer, partition, offset, value):
        with self._lock:
            self.events.append(("read", consumer, partition, offset, value))

    def commit(self, group, consumer, partition, offset):
        with self._lock:
            self.events.append(("commit", consumer, partition, offset, group))

    def reads(self):
        with self._lock:
            return [(c, p, o, v) for kind, c, p, o, v in self.events if kind == "read"]

    def check(self, final_log, groups=None, log_start=None):
        """`final_log`: {partition: [(offset, value)]}, read whole after the
        faults; `groups`: {consumer: group}; `log_start`: {partition: offset}
        where retention has moved a partition's start (what was acknowledged
        below it is gone by design, not lost). Returns ({fault: [examples]},
        summary): the dict is empty when the history is clean."""
        log_start = log_start or {}
        groups = groups or {}
        faults = defaultdict(list)
        with self._lock:
            sends, acked, events = list(self.sends), dict(self.acked), list(self.events)
            failed = len(self.failed)
        reads = [(c, p, o, v) for kind, c, p, o, v in events if kind == "read"]

        at = {}  # (partition, offset) -> value
        where = defaultdict(set)  # value -> {(partition, offset)}
        for p, recs in final_log.items():
            for o, v in recs:
                at[(p, o)] = v
                where[v].add((p, o))
        for c, p, o, v in reads:
            seen = at.setdefault((p, o), v)
            if seen != v:
                faults["inconsistent offsets"].append(f"{p}@{o} holds {seen!r} and {v!r} (read by {c})")
            where[v].add((p, o))

        in_log = {(p, o): v for p, recs in final_log.items() for o, v in recs}
        in_log_values = set(in_log.values())
        retired = 0  # acknowledged below a partition's log start
        for v, (p, o) in acked.items():
            if p is None:
                if v not in in_log_values:
                    faults["lost"].append(f"{v!r} acknowledged, and in no partition of the log")
            elif o < log_start.get(p, 0):
                retired += 1
            elif in_log.get((p, o)) != v:
                faults["lost"].append(f"{v!r} acknowledged at {p}@{o}, where the log holds {in_log.get((p, o))!r}")
        for v, places in where.items():
            if len(places) > 1:
                faults["duplicated"].append(f"{v!r} at {sorted(places)}")

        latest = {}  # (producer, partition) -> offset of its latest acknowledged send
        for producer, _, v in sends:
            if v not in acked or acked[v][0] is None:
                continue
            p, o = acked[v]
            before = latest.get((producer, p))
            if before is not None and o <= before:
                faults["reordered"].append(f"{producer}'s {v!r} at {p}@{o}, sent after one acknowledged at {p}@{before}")
            latest[(producer, p)] = o

        offsets = {p: sorted(o for o, _ in recs) for p, recs in final_log.items()}
        committed = {}  # (group, partition) -> highest offset committed so far
        last_read = {}  # (consumer, partition) -> offset
        for kind, c, p, o, extra in events:
            if kind == "commit":
                group = extra
                before = committed.get((group, p))
                if before is not None and o < before:
                    faults["committed offsets went backwards"].append(
                        f"group {group} partition {p}: {before} then {o} (by {c})")
                committed[(group, p)] = max(o, before if before is not None else o)
                continue
            group = groups.get(c)
            floor = committed.get((group, p)) if group is not None else None
            if floor is not None and o < floor:
                faults["rewound past a commit"].append(f"{c} read {p}@{o} after group {group} committed {floor}")
            before = last_read.get((c, p))
            if before is not None and o > before + 1:
                known = offsets.get(p, [])
                i = bisect.bisect_right(known, before)
                if i < len(known) and known[i] < o:
                    faults["skipped"].append(f"{c} read {p}@{before} then {p}@{o}, skipping {p}@{known[i]}")
            last_read[(c, p)] = o

        unacked = sum(1 for v in where if v not in acked)
        commits = len(events) - len(reads)
        summary = (f"{len(sends)} sends, {len(acked)} acknowledged, {failed} failed, "
                   f"{unacked} read but never acknowledged, {len(reads)} reads, {commits} commits"
                   + (f", {retired} acknowledged below the log start (retention)" if retired else ""))
        return {k: v[:5] + ([f"... {len(v) - 5} more"] if len(v) > 5 else []) for k, v in faults.items() if v}, summary


def group_member(bootstrap, topic, group, history, name, stop, ends):
    """A consumer of `group` on `topic` (confluent-kafka) for a thread:
    reads, records each read in `history`, and commits what it read after
    each batch, recording each commit the broker took. Goes on until `stop`
    is set and `ends["done"]` says the group has read the final log
    (`read_through`)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
    c.subscribe([topic])
    try:
        while not (stop.is_set() and ends.get("done")):
            got = [m for m in c.consume(200, 0.5) if m.error() is None]
            for m in got:
                history.read(name, m.partition(), m.offset(), m.value().decode())
            if got:
                try:
                    for tp in c.commit(asynchronous=False) or []:
                        if tp.error is None and tp.offset >= 0:
                            history.commit(group, name, tp.partition, tp.offset)
                except KafkaException:
                    pass  # not taken (the coordinator is down or moving): nothing to record
    finally:
        c.close()


def read_through(history, final_log):
    """Whether the consumers, together, have read every partition of the
    final log to its last offset."""
    read = {}
    for _, p, o, _ in history.reads():
        read[p] = max(o, read.get(p, -1))
    return all(read.get(p, -1) >= recs[-1][0] for p, recs in final_log.items() if recs)


def members_read_to_the_end(history, final_log, ends, members):
    """Lets `group_member` threads `members` read on until, together, they
    have read `final_log` whole (`read_through`), then end them."""
    from conftest import wait_until
    wait_until(lambda: read_through(history, final_log), timeout=60, what="the group to read the whole log")
    ends["done"] = True
    for t in members:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in members), "a group member did not finish"


def produce_recorded(producer, topic, history, name, stop, key=None, times=None):
    """Sends `name-0`, `name-1`, ... to `topic` through `producer` at about
    1000 records/s until `stop` is set, recording each send and its answer
    in `history` (and, given `times`, each acknowledgement's monotonic time
    by value). `key(i)` keys the i-th send. The caller flushes."""
    def done(err, msg):
        value = msg.value().decode()
        if err is None:
            history.ack(value, msg.partition(), msg.offset())
            if times is not None:
                times[value] = time.monotonic()
        else:
            history.fail(value, str(err))
    i = 0
    while not stop.is_set():
        value = f"{name}-{i}"
        history.send(name, value)
        producer.produce(topic, key=key(i) if key else None, value=value, on_delivery=done)
        producer.poll(0)
        i += 1
        if i % 20 == 0:
            time.sleep(0.02)  # a steady load, not a flood
