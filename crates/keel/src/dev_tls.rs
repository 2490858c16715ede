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
        // Made by an older Keel that left keys readable by everyone.
        for key in [&files.server_key, &files.client_key] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("chmod 600 {}", key.display()))?;
        }
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
    // Certificates are public (0644); private keys are the owner's alone
    // (0600), set at creation so no other user can ever open them.
    for (path, pem, mode) in [
        (&files.ca, ca_cert.pem(), 0o644),
        (&files.server_cert, server, 0o644),
        (&files.server_key, server_key, 0o600),
        (&files.client_cert, client, 0o644),
        (&files.client_key, client_key, 0o600),
    ] {
        write_with_mode(path, pem.as_bytes(), mode)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(files)
}

/// Writes `bytes` to a new (or truncated) file created with `mode`, and sets
/// `mode` again in case the file was there before with wider rights.
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_keys_are_the_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let files = super::make(dir.path()).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.server_key), 0o600);
        assert_eq!(mode(&files.client_key), 0o600);
        assert_eq!(mode(&files.ca), 0o644);
        // Keys an older Keel left readable by everyone are tightened on reuse.
        std::fs::set_permissions(&files.server_key, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        super::make(dir.path()).unwrap();
        assert_eq!(mode(&files.server_key), 0o600);
    }
}
