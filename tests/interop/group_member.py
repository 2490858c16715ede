"""A kafka-python consumer-group member, run as its own process by test_groups.py.

Prints one JSON line per event on stdout: {"assigned": [partitions]} whenever its
assignment changes, and {"record": value, "partition": p} for each record, after
the offsets up to it are committed (synchronously).
"""
import json
import sys

from kafka import KafkaConsumer

bootstrap, topic, group = sys.argv[1:4]
c = KafkaConsumer(
    topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
    enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=500,
    max_poll_records=50,
)
assigned = None


def say(**event):
    print(json.dumps(event), flush=True)


while True:
    batch = c.poll(timeout_ms=100)
    now = sorted(tp.partition for tp in c.assignment())
    if now != assigned:
        assigned = now
        say(assigned=now)
    if batch:
        c.commit()
        for tp, records in batch.items():
            for r in records:
                say(record=r.value.decode(), partition=tp.partition)
