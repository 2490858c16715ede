"""Certificates made in the tests (Python's `cryptography`): a throwaway CA
that issues leaves for 127.0.0.1, usable as server and client certificates,
valid or already expired."""
import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Ca:
    """A throwaway CA that writes PEM files into `dir`."""

    def __init__(self, dir, cn):
        self.dir, self.cn = dir, cn
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = dir / f"{cn}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, cn, expired=False):
        """A leaf for 127.0.0.1 usable as server and client; returns (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        end = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=1)
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                           x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        c, k = self.dir / f"{self.cn}-{cn}.pem", self.dir / f"{self.cn}-{cn}.key"
        c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        return c, k


class ClusterTls:
    """Mutual TLS on a cluster's client and peer ports, from one fresh CA:
    `flags` for `keel start`, and the client's files."""

    def __init__(self, dir):
        dir.mkdir(exist_ok=True)
        self.ca = Ca(dir, "cluster-ca")
        cert, key = self.ca.issue("member")
        self.client_cert, self.client_key = self.ca.issue("client")
        ca = str(self.ca.pem)
        self.flags = ["--cert-file", str(cert), "--key-file", str(key),
                      "--trusted-ca-file", ca, "--client-cert-auth",
                      "--peer-cert-file", str(cert), "--peer-key-file", str(key),
                      "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]
