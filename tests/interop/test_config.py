"""A node configured as operators configure etcd and Kafka: a TOML file
(`--config-file`), `KEEL_<FLAG>` environment variables and flags, in that
order of strength, and a three-node cluster started from three files."""
import json
import os
import subprocess
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from conftest import KEEL, free_port, wait_until
from etcd_cluster import etcdctl


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(extra)
    return env


def health(admin):
    with urllib.request.urlopen(f"http://{admin}/health", timeout=2) as r:
        return json.loads(r.read())


def cluster_view(admin):
    with urllib.request.urlopen(f"http://{admin}/cluster", timeout=2) as r:
        return json.loads(r.read())


def partitions_of_auto_created(bootstrap, topic):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    p.produce(topic, b"x")
    assert p.flush(30) == 0
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return len(md.topics[topic].partitions)


def up(admin):
    try:
        return health(admin)
    except OSError:
        return None


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_a_flag_beats_its_variable_which_beats_the_file(tmp_path):
    file_port, env_port = free_port(), free_port()
    admin = f"127.0.0.1:{free_port()}"
    cfg = tmp_path / "keel.toml"
    cfg.write_text(
        f'data-dir = "{tmp_path / "data"}"\n'
        f'kafka-addr = "127.0.0.1:{file_port}"\n'
        f'admin-addr = "{admin}"\n'
        f'etcd-addr = "127.0.0.1:{free_port()}"\n'
        f'peer-addr = "127.0.0.1:{free_port()}"\n'
        'cql-addr = "none"\n'
        "num-partitions = 2\n"
        'rack = "from-file"\n')
    env = clean_env(KEEL_KAFKA_ADDR=f"127.0.0.1:{env_port}", KEEL_RACK="from-env")
    args = [str(KEEL), "start", "--config-file", str(cfg), "--rack", "from-flag"]

    shown = subprocess.run(args + ["--print-config"], env=env, capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    lines = {l.split(" = ")[0]: l for l in shown.stdout.splitlines() if " = " in l}
    assert lines["rack"].startswith('rack = "from-flag"') and lines["rack"].endswith("# flag")
    assert f'"127.0.0.1:{env_port}"' in lines["kafka-addr"] and "environment KEEL_KAFKA_ADDR" in lines["kafka-addr"]
    assert lines["num-partitions"].startswith("num-partitions = 2") and f"file {cfg}" in lines["num-partitions"]
    assert lines["node-id"].endswith("# default")
    assert not (tmp_path / "data").exists(), "--print-config must not start anything"

    node = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "wb"))
    try:
        wait_until(lambda: up(admin), timeout=30, what="the node's admin port")
        # The variable's address, not the file's.
        assert partitions_of_auto_created(f"127.0.0.1:{env_port}", "auto") == 2
        wait_until(lambda: cluster_view(admin)["nodes"], what="registration")
        assert cluster_view(admin)["nodes"][0]["rack"] == "from-flag"
        import socket
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", file_port)) != 0, "the file's kafka-addr was used"
    finally:
        stop([node])


def test_unknown_keys_are_named_and_nothing_starts(tmp_path):
    cfg = tmp_path / "keel.toml"
    cfg.write_text(f'data-dir = "{tmp_path / "data"}"\nlisteners = "PLAINTEXT://:9092"\nnum_partitions = 3\n')
    r = subprocess.run([str(KEEL), "start", "--config-file", str(cfg)], env=clean_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "unknown keys listeners, num_partitions" in r.stderr, r.stderr
    assert str(cfg) in r.stderr
    assert not (tmp_path / "data").exists()
    # A bad value gets clap's own message, naming the key as a flag.
    cfg.write_text("num-partitions = 0\n")
    r = subprocess.run([str(KEEL), "start", "--config-file", str(cfg)], env=clean_env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--num-partitions" in r.stderr, r.stderr
    # So does a bad variable.
    r = subprocess.run([str(KEEL), "start", "--print-config"], env=clean_env(KEEL_NODE_ID="zero"),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "--node-id" in r.stderr, r.stderr


def test_a_three_node_cluster_from_three_config_files(tmp_path):
    ids = [1, 2, 3]
    peer = {i: f"127.0.0.1:{free_port()}" for i in ids}
    etcd = {i: f"127.0.0.1:{free_port()}" for i in ids}
    kafka = {i: f"127.0.0.1:{free_port()}" for i in ids}
    admin = {i: f"127.0.0.1:{free_port()}" for i in ids}
    # etcd's NAME=URL form, as `etcdctl member add` prints ETCD_INITIAL_CLUSTER.
    initial = ",".join(f"keel-{i}=http://{peer[i]}" for i in ids)
    procs = []
    try:
        for i in ids:
            cfg = tmp_path / f"node{i}.toml"
            cfg.write_text(
                f"node-id = {i}\n"
                f'data-dir = "{tmp_path / f"node{i}"}"\n'
                f'peer-addr = "{peer[i]}"\n'
                f'etcd-addr = "{etcd[i]}"\n'
                f'kafka-addr = "{kafka[i]}"\n'
                f'admin-addr = "{admin[i]}"\n'
                'cql-addr = "none"\n'
                f'initial-cluster = "{initial}"\n'
                "num-partitions = 3\n")
            procs.append(subprocess.Popen([str(KEEL), "start", "--config-file", str(cfg)], env=clean_env(),
                                          stdout=open(tmp_path / f"node{i}.out", "wb"),
                                          stderr=open(tmp_path / f"node{i}.log", "wb")))
        for i in ids:
            wait_until(lambda: up(admin[i]), timeout=30, what=f"node {i}")
        members = json.loads(etcdctl(etcd[1], "member", "list", "-w", "json"))["members"]
        assert sorted(m["name"] for m in members) == ["keel-1", "keel-2", "keel-3"]
        wait_until(lambda: len(cluster_view(admin[1])["nodes"]) == 3, timeout=30, what="three registered nodes")
        # One cluster, one id: every node's /health and banner say the
        # quorum's, the one Kafka's Metadata answers.
        wait_until(lambda: len({health(admin[i])["cluster_id"] for i in ids}) == 1, what="one cluster id")
        cid = health(admin[1])["cluster_id"]
        assert cluster_view(admin[2])["cluster_id"] == cid
        md = AdminClient({"bootstrap.servers": kafka[2]}).list_topics(timeout=10)
        assert md.cluster_id == cid and len(md.brokers) == 3
        wait_until(lambda: all(f"cluster {cid}" in (tmp_path / f"node{i}.out").read_text() for i in ids),
                   what="every banner naming the cluster's id")
        # The files' broker default reaches every node.
        assert partitions_of_auto_created(kafka[3], "from-files") == 3
    finally:
        stop(procs)
