"""kcat (Debian's librdkafka 2.0.2 build) against a real keel node."""
import subprocess
import pytest


def kcat(node, *args, input=None, timeout=60):
    r = subprocess.run(["kcat", "-b", node.bootstrap, *args], input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def test_metadata_lists_the_node_at_its_address(node):
    out = kcat(node, "-L")
    assert f"broker 1 at {node.bootstrap}" in out
    kcat(node, "-P", "-t", "listed", input=b"x\n")
    assert 'topic "listed" with 1 partitions' in kcat(node, "-L")


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_round_trip_with_every_codec(node, codec):
    lines = [f"{codec}-{i}" for i in range(2000)]
    kcat(node, "-P", "-t", f"rt-{codec}", "-z", codec, "-X", "linger.ms=20", "-K", ":", input="\n".join(f"k{i}:{v}" for i, v in enumerate(lines)).encode())
    out = kcat(node, "-C", "-t", f"rt-{codec}", "-o", "beginning", "-e", "-f", "%k=%s@%o\n")
    got = out.splitlines()
    assert got == [f"k{i}={v}@{i}" for i, v in enumerate(lines)]


def test_consume_from_an_offset_and_by_timestamp(node):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": node.bootstrap})
    for i, v in enumerate("abcde"):
        p.produce("ts", value=v, timestamp=1_000_000 + 1000 * i)
    assert p.flush(30) == 0
    assert kcat(node, "-C", "-t", "ts", "-o", "2", "-e", "-f", "%s\n").split() == ["c", "d", "e"]
    assert kcat(node, "-C", "-t", "ts", "-o", "s@1002500", "-e", "-f", "%s@%T\n").split() == ["d@1003000", "e@1004000"]


def test_balanced_consumer_commits_and_resumes(node):
    """kcat -G: a consumer group with librdkafka's auto-commit; a second run of
    the same group reads only what arrived since."""
    kcat(node, "-P", "-t", "kg", input=b"a\nb\nc\n")
    first = kcat(node, "-G", "kgroup", "kg", "-o", "beginning", "-e", "-q", "-f", "%s\n")
    assert first.split() == ["a", "b", "c"]
    kcat(node, "-P", "-t", "kg", input=b"d\n")
    again = kcat(node, "-G", "kgroup", "kg", "-e", "-q", "-f", "%s\n")
    assert again.split() == ["d"]
