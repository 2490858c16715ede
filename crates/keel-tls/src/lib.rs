//! TLS for Keel's listeners, in one place (DESIGN.md, "Security is one layer
//! under every listener"): rustls configurations made from PEM files named as
//! etcd names them (`--cert-file`, `--key-file`, `--trusted-ca-file`,
//! `--client-cert-auth`), an acceptor that runs each handshake on its own task
//! with a deadline and logs a failed one without disturbing the listener, and
//! a client configuration for the node's own outbound calls (a follower
//! forwarding to the leader presents the same certificate, as etcd does).
//!
//! The etcd client port uses it first; the Kafka and CQL listeners take the
//! same [`TlsFiles`] and [`accept`] later.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

pub use rustls;

/// How long a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener; more connections wait in the
/// kernel's backlog.
pub const HANDSHAKES_MAX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read {what} {}: {why}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("{} holds no certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("--client-cert-auth needs --trusted-ca-file (the CA that signs client certificates)")]
    ClientAuthWithoutCa,
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The PEM files of one listener, as etcd's flags name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CAs whose client certificates are accepted, and whose server
    /// certificates this node trusts when it calls another member.
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse clients that present no certificate signed by `trusted_ca_file`.
    pub client_cert_auth: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what: "certificates",
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.to_path_buf(),
        why: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certificates(path)? {
        roots.add(c)?;
    }
    Ok(roots)
}

impl TlsFiles {
    /// The listener's configuration, offering `alpn` (most preferred first).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match (&self.trusted_ca_file, self.client_cert_auth) {
            (Some(ca), true) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            ),
            (None, true) => return Err(TlsError::ClientAuthWithoutCa),
            // As etcd: without --client-cert-auth a client certificate is
            // neither asked for nor needed.
            (_, false) => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certificates(&self.cert_file)?, private_key(&self.key_file)?)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// The configuration of this node's own calls to another member: trusts
    /// `trusted_ca_file` and presents this node's certificate.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
        let roots = match &self.trusted_ca_file {
            Some(ca) => roots(ca)?,
            // No CA named: trust the certificate's own chain (a self-signed
            // certificate shared by every member).
            None => {
                let mut r = RootCertStore::empty();
                for c in certificates(&self.cert_file)? {
                    r.add(c)?;
                }
                r
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certificates(&self.cert_file)?, private_key(&self.key_file)?)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// One accepted TLS connection.
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

impl TlsConn {
    /// The client's certificate chain, leaf first, when it presented one.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.inner.get_ref().1.peer_certificates()
    }
}

/// What every request on a TLS connection knows of it (tonic puts it in the
/// request's extensions).
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    pub local_addr: Option<SocketAddr>,
    pub remote_addr: Option<SocketAddr>,
    /// The subject CN of the client's certificate, which the handshake
    /// verified against the trusted CA (etcd's user name with
    /// `--client-cert-auth`).
    pub client_cn: Option<String>,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        TlsConnectInfo {
            local_addr: self.local,
            remote_addr: self.remote,
            client_cn: self
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| common_name(leaf)),
        }
    }
}

/// A certificate's subject common name (the last CN, as Go's
/// `pkix.Name.CommonName` takes it), if it has one that is a string.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::{asn1, Decode};
    let cert = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    let cn = const_oid::db::rfc4519::CN;
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == cn)
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|atv| {
            let v = &atv.value;
            asn1::Utf8StringRef::try_from(v)
                .map(|s| s.as_str().to_string())
                .or_else(|_| asn1::PrintableStringRef::try_from(v).map(|s| s.as_str().to_string()))
                .or_else(|_| asn1::Ia5StringRef::try_from(v).map(|s| s.as_str().to_string()))
                .ok()
        })
        .next_back()
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts connections on `listener` and hands out those whose handshake
/// succeeded. A client that speaks plaintext, presents an untrusted or
/// expired certificate, or stalls is refused with one log line naming
/// `what` (the listener), its address and rustls' reason, and the listener
/// goes on. Ends when `stop` turns true.
pub fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    what: &'static str,
    mut stop: watch::Receiver<bool>,
) -> mpsc::Receiver<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tx.closed() => return,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            let (tcp, remote) = tokio::select! {
                _ = stopped(&mut stop) => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off.
                        tracing::warn!("{what}: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().ok();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(inner)) => {
                        let _ = tx
                            .send(Ok(TlsConn {
                                inner,
                                local,
                                remote: Some(remote),
                            }))
                            .await;
                    }
                    Ok(Err(e)) => tracing::warn!("{what}: TLS handshake with {remote} refused: {e}"),
                    Err(_) => tracing::warn!(
                        "{what}: TLS handshake with {remote} refused: not finished within {HANDSHAKE_TIMEOUT:?}"
                    ),
                }
            });
        }
    });
    rx
}

/// Resolves once `stop` turns true (the guard `wait_for` returns is not Send,
/// so it is dropped here rather than held across the caller's awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Connects to `addr` (`HOST:PORT`, `[IPv6]:PORT`) over TLS, checking the
/// certificate against HOST (a DNS name or an IP address, as in the member's
/// URL).
pub async fn connect(
    config: Arc<ClientConfig>,
    addr: &str,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = host_of(addr);
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The host part of `HOST:PORT` or `[IPv6]:PORT`.
fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert_file: dir.path().join("nope.pem"),
            key_file: dir.path().join("nope.key"),
            ..TlsFiles::default()
        };
        let e = files.server_config(&[b"h2"]).unwrap_err().to_string();
        assert!(
            e.starts_with("read certificates ") && e.contains("nope.pem"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = TlsFiles {
            cert_file: empty.clone(),
            ..files
        };
        let e = files.server_config(&[b"h2"]).unwrap_err().to_string();
        assert_eq!(e, format!("{} holds no certificate", empty.display()));
    }

    #[test]
    fn the_host_is_what_precedes_the_port() {
        assert_eq!(host_of("127.0.0.1:2379"), "127.0.0.1");
        assert_eq!(host_of("node-1.example:2380"), "node-1.example");
        assert_eq!(host_of("[::1]:2379"), "::1");
    }

    #[test]
    fn client_cert_auth_needs_a_ca() {
        let files = TlsFiles {
            client_cert_auth: true,
            ..TlsFiles::default()
        };
        assert!(matches!(
            files.server_config(&[]),
            Err(TlsError::ClientAuthWithoutCa)
        ));
    }
}
