"""Feature flags (KIP-584) and client telemetry (KIP-714), issue 37:
kafka-python's `describe_features`/`update_features` against `keel dev`, and
librdkafka's own telemetry client asking for its subscription.

What a user relies on: `group.version` is what turns KIP-848's consumer
group protocol on and off, as in Kafka 4; a downgrade must say it is one;
and a client that asks for a telemetry subscription gets an empty one, so
it pushes nothing.
"""
import logging
import time

from confluent_kafka import Consumer, KafkaError, Producer
import pytest
from kafka import KafkaAdminClient
from kafka.errors import InvalidUpdateVersionError

from conftest import wait_until


def test_features_are_described_and_group_version_turns_the_consumer_protocol_off(node):
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        f = admin.describe_features()
        assert f["group.version"]["supported"] == (0, 1), f
        assert f["group.version"]["finalized"] == (1, 1), f
        first_epoch = f["group.version"]["finalized_epoch"]
        assert f["transaction.version"]["supported"] == (0, 0), f
        assert "finalized" not in f["transaction.version"], f

        # Refused, and nothing changes: a downgrade not named as one, a
        # level Keel does not support, a feature it does not know.
        for refused in ({"group.version": 0}, {"group.version": 2}, {"metadata.version": 20},
                        {"group.version": 1, "transaction.version": 1}):
            with pytest.raises(InvalidUpdateVersionError):
                admin.update_features(refused)
        assert admin.describe_features()["group.version"]["finalized"] == (1, 1)
        # validate_only changes nothing either.
        assert admin.update_features({"group.version": ("SAFE_DOWNGRADE", 0)}, validate_only=True) == {"group.version": "OK"}
        assert admin.describe_features()["group.version"]["finalized"] == (1, 1)

        assert admin.update_features({"group.version": ("SAFE_DOWNGRADE", 0)}) == {"group.version": "OK"}
        f = admin.describe_features()
        assert "finalized" not in f["group.version"], f

        # With group.version 0, a group.protocol=consumer member is refused.
        c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "off", "group.protocol": "consumer"})
        c.subscribe(["anything"])
        errors = []
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error():
                errors.append(m.error())
        c.close()
        assert errors, "a consumer-protocol member joined with group.version 0"
        # librdkafka makes Kafka's UNSUPPORTED_VERSION answer a fatal error.
        assert errors[0].code() == KafkaError._FATAL, errors
        assert "API version not supported: ConsumerGroupHeartbeat" in errors[0].str(), errors

        # Back on: a consumer-protocol member gets its assignment.
        assert admin.update_features({"group.version": 1}) == {"group.version": "OK"}
        # The epoch is the metadata index of the last change: it moved.
        assert admin.describe_features()["group.version"]["finalized_epoch"] > first_epoch
        p = Producer({"bootstrap.servers": node.bootstrap})
        p.produce("on", b"v")
        assert p.flush(15) == 0
        c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "on", "group.protocol": "consumer",
                      "auto.offset.reset": "earliest"})
        c.subscribe(["on"])
        got = wait_until(lambda: (lambda m: m if m is not None and not m.error() else None)(c.poll(0.5)),
                         timeout=20, what="a record through a consumer-protocol group")
        assert got.value() == b"v"
        c.close()
    finally:
        admin.close()


def test_a_client_asking_for_a_telemetry_subscription_gets_an_empty_one(node):
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    log = logging.getLogger("telemetry-test")
    log.setLevel(logging.DEBUG)
    log.addHandler(Keep())
    p = Producer({"bootstrap.servers": node.bootstrap, "debug": "telemetry", "enable.metrics.push": True,
                  "logger": log})
    p.produce("telemetry", b"v")
    assert p.flush(15) == 0
    # librdkafka 2.16 logs: "Handled GetTelemetrySubscriptions, scheduling
    # FSM after 300000000 microseconds, ..., err = Success, metrics = 0".
    def handled():
        p.poll(0.1)
        return [l for l in lines if "Handled GetTelemetrySubscriptions" in l]
    told = wait_until(handled, timeout=15, what="librdkafka to handle its telemetry subscription")
    assert "err = Success" in told[0] and "metrics = 0" in told[0], told
    assert "after 300000000 microseconds" in told[0], told
    # No metrics requested, so none is pushed: librdkafka never sends PushTelemetry.
    p.flush(1)
    assert not any("PushTelemetry" in l for l in lines), [l for l in lines if "Push" in l]
