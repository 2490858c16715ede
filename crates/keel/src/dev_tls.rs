//! `keel dev --tls`: a throwaway CA and certificates for a local cluster, so
//! TLS can be tried without an openssl session. Made once under
//! `DATA_DIR/tls` and reused by later starts on the same data dir.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The files `keel dev --tls` serves with and prints for clients.
pub struct DevTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// Makes (or finds) the CA, a certificate for the nodes (127.0.0.1 and
/// localhost, server and client use) and one for clients (CN `root`).
pub fn make(data_dir: &Path) -> Result<DevTls> {
    let dir = data_dir.join("tls");
    let files = DevTls {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    if [&files.ca, &files.server_key, &files.client_key]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "keel dev throwaway CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf = |cn: &str, names: Vec<String>| -> Result<(String, String)> {
        let mut p = CertificateParams::new(names)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server, server_key) = leaf("keel-dev", vec!["127.0.0.1".into(), "localhost".into()])?;
    let (client, client_key) = leaf("root", vec![])?;
    for (path, pem) in [
        (&files.ca, ca_cert.pem()),
        (&files.server_cert, server),
        (&files.server_key, server_key),
        (&files.client_cert, client),
        (&files.client_key, client_key),
    ] {
        std::fs::write(path, pem).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(files)
}
