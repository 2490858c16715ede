"""TLS on the etcd client port, with certificates made in the test (Python's
`cryptography`): etcdctl, the JSON gateway and /health over TLS; mutual TLS
with --client-cert-auth; plaintext, untrusted and expired clients refused
with a log line while the node keeps serving; a three-node cluster whose
followers forward to the leader over TLS, through a leader kill -9."""
import socket

import pytest
import requests

from conftest import wait_until
from etcd_cluster import Cluster, etcdctl
from tls_certs import Ca


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca, other = Ca(d, "keel-ca"), Ca(d, "other-ca")
    return {"ca": ca, "other": other, "server": ca.issue("server"), "client": ca.issue("alice"),
            "untrusted": other.issue("mallory"), "expired": ca.issue("late", expired=True)}


def tls_node(make_node, pki, *extra):
    cert, key = pki["server"]
    return make_node(extra=["--cert-file", str(cert), "--key-file", str(key), *extra]).start()


def put_get(endpoint, *flags):
    etcdctl(endpoint, *flags, "put", "k", "v")
    return etcdctl(endpoint, *flags, "get", "k", "--print-value-only").strip()


def test_client_port_serves_grpc_gateway_and_health_over_tls(make_node, pki):
    node = tls_node(make_node, pki)
    https = f"https://{node.etcd}"
    ca = ["--cacert", str(pki["ca"].pem)]
    assert put_get(https, *ca) == "v"
    # The JSON gateway and etcd's HTTP endpoints, over HTTPS.
    r = requests.post(f"{https}/v3/kv/range", json={"key": "aw=="}, verify=str(pki["ca"].pem), timeout=5)
    assert r.status_code == 200 and r.json()["kvs"][0]["value"] == "dg=="
    assert requests.get(f"{https}/health", verify=str(pki["ca"].pem), timeout=5).json()["health"] == "true"
    # A member publishes an https:// client URL.
    members = etcdctl(https, *ca, "member", "list")
    assert f"https://{node.etcd}" in members
    # A plaintext client is refused, with a log line, and the node keeps serving.
    p = etcdctl(f"http://{node.etcd}", "get", "k", check=False)
    assert p.returncode != 0
    with pytest.raises(requests.RequestException):
        requests.get(f"http://{node.etcd}/health", timeout=5)
    # A client that does not trust the node's CA refuses it.
    p = etcdctl(https, "--cacert", str(pki["other"].pem), "get", "k", check=False)
    assert p.returncode != 0
    wait_until(lambda: "etcd client port: TLS handshake with 127.0.0.1" in node.logs(), what="the refusal logged")
    assert put_get(https, *ca) == "v"


def test_client_cert_auth_refuses_clients_without_a_trusted_certificate(make_node, pki):
    node = tls_node(make_node, pki, "--trusted-ca-file", str(pki["ca"].pem), "--client-cert-auth")
    https = f"https://{node.etcd}"
    ca = ["--cacert", str(pki["ca"].pem)]
    cert, key = pki["client"]
    mine = [*ca, "--cert", str(cert), "--key", str(key)]
    assert put_get(https, *mine) == "v"
    refused = {
        "no certificate": ca,
        "another CA's certificate": [*ca, "--cert", str(pki["untrusted"][0]), "--key", str(pki["untrusted"][1])],
        "an expired certificate": [*ca, "--cert", str(pki["expired"][0]), "--key", str(pki["expired"][1])],
    }
    for what, flags in refused.items():
        p = etcdctl(https, *flags, "get", "k", check=False)
        assert p.returncode != 0, f"a client with {what} was served: {p.stdout}"
    with pytest.raises(requests.RequestException):
        requests.get(f"{https}/health", verify=str(pki["ca"].pem), timeout=5)
    r = requests.get(f"{https}/health", verify=str(pki["ca"].pem), cert=(str(cert), str(key)), timeout=5)
    assert r.json()["health"] == "true"
    # Each refusal is logged with rustls' reason.
    logs = node.logs()
    for why in ["peer sent no certificates", "UnknownIssuer", "certificate expired"]:
        assert "refused: " in logs and why in logs, f"no refusal for {why!r} in the log"
    assert put_get(https, *mine) == "v"


def test_a_tls_cluster_forwards_to_the_leader_and_replicates_over_tls(tmp_path, pki):
    """Client and peer ports both TLS with mutual authentication, as etcd's
    secure clusters run: followers forward to the leader and Raft replicates
    over TLS, through a leader kill -9 and its restart; a plaintext peer is
    refused."""
    cert, key = pki["server"]
    ca = str(pki["ca"].pem)
    c = Cluster(tmp_path, 3, extra=["--cert-file", str(cert), "--key-file", str(key),
                                    "--trusted-ca-file", ca, "--client-cert-auth",
                                    "--peer-cert-file", str(cert), "--peer-key-file", str(key),
                                    "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]).start()
    ccert, ckey = pki["client"]
    flags = ["--cacert", str(pki["ca"].pem), "--cert", str(ccert), "--key", str(ckey)]
    eps = [f"https://{n.endpoint}" for n in c.nodes.values()]
    try:
        leader = c.wait_leader()
        follower = next(i for i in c.nodes if i != leader)
        members = etcdctl(eps, *flags, "member", "list")
        assert members.count("https://127.0.0.1:") == 6, members  # peer and client URLs
        # Raft itself speaks only TLS: a plaintext peer is refused and logged.
        with socket.create_connection(("127.0.0.1", c.peer_ports[follower]), timeout=5) as s:
            s.sendall(b"\x00\x00\x00\x10plaintext raft frame")
            s.settimeout(5)
            try:
                while s.recv(1024):
                    pass
            except OSError:
                pass
        wait_until(lambda: "raft peer port: TLS handshake with" in c.nodes[follower].log.read_text(),
                   what="the plaintext peer's refusal in the log")
        lease = etcdctl(eps, *flags, "lease", "grant", "30").split()[1]
        # KeepAlive and TimeToLive through a follower are forwarded to the
        # leader's https:// client URL with the member's own certificate.
        out = etcdctl(f"https://{c.nodes[follower].endpoint}", *flags, "lease", "keep-alive", "--once", lease)
        assert "keepalived with TTL(30)" in out
        # Through a leader kill -9: a new leader, and forwarding to it.
        c.nodes[leader].kill9()
        new = c.wait_leader(exclude=leader)
        other = next(i for i in c.nodes if i not in (leader, new))
        live = [f"https://{c.nodes[i].endpoint}" for i in (new, other)]
        wait_until(lambda: etcdctl(live, *flags, "put", "after", "kill", check=False).returncode == 0,
                   timeout=20, what="a write after the leader's kill")
        lease = etcdctl(live, *flags, "lease", "grant", "30").split()[1]
        out = etcdctl(f"https://{c.nodes[other].endpoint}", *flags, "lease", "keep-alive", "--once", lease)
        assert "keepalived with TTL(30)" in out
        c.nodes[leader].start()
        wait_until(lambda: etcdctl(f"https://{c.nodes[leader].endpoint}", *flags, "get", "after",
                                   "--consistency=s", "--print-value-only", check=False).stdout.strip() == "kill",
                   timeout=20, what="the restarted member to catch up")
    finally:
        c.stop()


def test_keel_dev_tls_makes_throwaway_certificates_and_prints_how_to_use_them(make_node):
    node = make_node(extra=["--tls"]).start()
    line = next(l for l in node.banner.splitlines() if "etcd:" in l)
    # "try: etcdctl --endpoints=https://ADDR --cacert CA --cert CERT --key KEY put greeting hello"
    words = line.split("try: etcdctl ")[1].split()
    assert words[0] == f"--endpoints=https://{node.etcd}", line
    flags = words[1:7]
    assert [flags[0], flags[2], flags[4]] == ["--cacert", "--cert", "--key"], line
    assert put_get(f"https://{node.etcd}", *flags) == "v"
    # Mutual TLS: the CA alone (no client certificate) is refused.
    assert etcdctl(f"https://{node.etcd}", *flags[:2], "get", "k", check=False).returncode != 0
    assert etcdctl(f"http://{node.etcd}", "get", "k", check=False).returncode != 0


def test_auth_over_tls_certificate_cn_is_the_user_and_tokens_win(make_node, pki):
    """With --client-cert-auth and auth on, a client certificate's CN is the
    user of a request without a token (etcd's AuthInfoFromTLS); a token
    (etcdctl --user, python etcd3's user/password, which grpcio sends only
    over TLS) names the user instead."""
    import etcd3

    node = tls_node(make_node, pki, "--trusted-ca-file", str(pki["ca"].pem), "--client-cert-auth",
                    "--bcrypt-cost", "4")
    https = f"https://{node.etcd}"
    ca = ["--cacert", str(pki["ca"].pem)]

    def cert_of(cn):
        cert, key = pki["client"] if cn == "alice" else pki["ca"].issue(cn)
        return [*ca, "--cert", str(cert), "--key", str(key)]

    root, alice, bob = cert_of("root"), cert_of("alice"), cert_of("bob")
    for cmd in [["user", "add", "root:rootpw"], ["role", "add", "root"],
                ["user", "grant-role", "root", "root"],
                ["role", "add", "app"], ["role", "grant-permission", "app", "--prefix=true", "readwrite", "app/"],
                ["user", "add", "alice", "--no-password"], ["user", "grant-role", "alice", "app"],
                ["role", "add", "bobs"], ["role", "grant-permission", "bobs", "--prefix=true", "readwrite", "bob/"],
                ["user", "add", "bob:bobpw"], ["user", "grant-role", "bob", "bobs"],
                ["auth", "enable"]]:
        etcdctl(https, *root, *cmd)
    # The certificate names the user: no password anywhere.
    assert etcdctl(https, *alice, "put", "app/x", "1").strip() == "OK"
    p = etcdctl(https, *alice, "put", "other", "1", check=False)
    assert p.returncode != 0 and "etcdserver: permission denied" in p.stderr, p.stderr
    assert etcdctl(https, *root, "user", "list").split() == ["alice", "bob", "root"]
    p = etcdctl(https, *alice, "user", "list", check=False)
    assert "etcdserver: permission denied" in p.stderr, p.stderr
    # A certificate whose CN is no user may do nothing.
    p = etcdctl(https, *cert_of("nobody"), "get", "app/x", check=False)
    assert "etcdserver: permission denied" in p.stderr, p.stderr
    # A token wins over the certificate: alice's certificate, bob's password.
    assert etcdctl(https, *alice, "--user", "bob:bobpw", "put", "bob/x", "1").strip() == "OK"
    p = etcdctl(https, *alice, "--user", "bob:bobpw", "put", "app/y", "1", check=False)
    assert "etcdserver: permission denied" in p.stderr, p.stderr

    # python etcd3 with user and password over mutual TLS.
    host, port = node.etcd.split(":")
    cert, key = pki["client"]
    c = etcd3.client(host=host, port=int(port), ca_cert=str(pki["ca"].pem), cert_cert=str(cert),
                     cert_key=str(key), user="bob", password="bobpw", timeout=10)
    c.put("bob/py", "v")
    assert c.get("bob/py")[0] == b"v"
    with pytest.raises(Exception, match="permission denied"):
        c.put("app/py", "v")
    with pytest.raises(Exception, match="authentication failed"):
        etcd3.client(host=host, port=int(port), ca_cert=str(pki["ca"].pem), cert_cert=str(cert),
                     cert_key=str(key), user="bob", password="wrong", timeout=10).get("bob/py")
    c.close()
