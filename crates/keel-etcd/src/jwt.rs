//! etcd's JWT auth tokens (`--auth-token jwt,pub-key=..,priv-key=..,
//! sign-method=..,ttl=..`): a token is a signed claim of the user name, the
//! auth revision it was issued at and an expiry, so any member that has the
//! public key can check it without having seen it issued, and a restart does
//! not end it. A token issued before an auth change carries the older
//! revision and is refused with `ErrAuthOldRevision`, on which etcd's clients
//! authenticate again (etcd's `server/auth/jwt.go`).
//!
//! Signing and verifying use ring (already under rustls); keys are PEM files:
//! PKCS#8 private keys, SubjectPublicKeyInfo public keys.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// etcd's default JWT lifetime.
pub const JWT_TTL_DEFAULT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Rs256,
    Rs384,
    Rs512,
    Es256,
    Es384,
    EdDsa,
}

impl Method {
    fn parse(s: &str) -> Result<Method, String> {
        Ok(match s {
            "RS256" => Method::Rs256,
            "RS384" => Method::Rs384,
            "RS512" => Method::Rs512,
            "ES256" => Method::Es256,
            "ES384" => Method::Es384,
            "EdDSA" => Method::EdDsa,
            other => {
                return Err(format!(
                    "sign-method {other:?} is not one of RS256, RS384, RS512, ES256, ES384, EdDSA"
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Method::Rs256 => "RS256",
            Method::Rs384 => "RS384",
            Method::Rs512 => "RS512",
            Method::Es256 => "ES256",
            Method::Es384 => "ES384",
            Method::EdDsa => "EdDSA",
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Method::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Method::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Method::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Method::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Method::Es384 => &signature::ECDSA_P384_SHA384_FIXED,
            Method::EdDsa => &signature::ED25519,
        }
    }
}

enum Signer {
    Rsa(signature::RsaKeyPair, &'static dyn signature::RsaEncoding),
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
}

/// One member's JWT configuration: it verifies with the public key and, if
/// it has the private key, issues.
pub struct Jwt {
    method: Method,
    public: Vec<u8>,
    signer: Option<Signer>,
    ttl: Duration,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("method", &self.method.name())
            .field("signs", &self.signer.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Jwt {
    /// Parses etcd's `--auth-token` value after `jwt,`: `pub-key=PATH`,
    /// `priv-key=PATH` (optional: without it the member only verifies),
    /// `sign-method=RS256|..`, `ttl=5m` (Go durations: `300s`, `5m`, `1h`).
    pub fn from_options(opts: &str) -> Result<Arc<Jwt>, String> {
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, JWT_TTL_DEFAULT);
        for part in opts.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
            match k {
                "pub-key" => public = Some(v.to_string()),
                "priv-key" => private = Some(v.to_string()),
                "sign-method" => method = Some(Method::parse(v)?),
                "ttl" => ttl = parse_go_duration(v)?,
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        let method = method.ok_or("sign-method is missing")?;
        let public = public.ok_or("pub-key is missing")?;
        Jwt::new(
            method,
            Path::new(&public),
            private.as_deref().map(Path::new),
            ttl,
        )
    }

    fn new(
        method: Method,
        public: &Path,
        private: Option<&Path>,
        ttl: Duration,
    ) -> Result<Arc<Jwt>, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_file(public)
            .map_err(|e| format!("pub-key {}: {e}", public.display()))?;
        let public_key = subject_public_key(spki.as_ref())
            .ok_or_else(|| format!("pub-key {}: not a public key", public.display()))?;
        let signer = match private {
            None => None,
            Some(path) => {
                let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| {
                    format!("priv-key {}: {e} (PKCS#8 PEM expected)", path.display())
                })?;
                let der = der.secret_pkcs8_der();
                let bad = |e: String| format!("priv-key {}: {e}", path.display());
                let rng = ring::rand::SystemRandom::new();
                let signer = match method {
                    Method::Rs256 | Method::Rs384 | Method::Rs512 => Signer::Rsa(
                        signature::RsaKeyPair::from_pkcs8(der).map_err(|e| bad(e.to_string()))?,
                        match method {
                            Method::Rs256 => &signature::RSA_PKCS1_SHA256,
                            Method::Rs384 => &signature::RSA_PKCS1_SHA384,
                            _ => &signature::RSA_PKCS1_SHA512,
                        },
                    ),
                    Method::Es256 | Method::Es384 => Signer::Ecdsa(
                        signature::EcdsaKeyPair::from_pkcs8(
                            if method == Method::Es256 {
                                &signature::ECDSA_P256_SHA256_FIXED_SIGNING
                            } else {
                                &signature::ECDSA_P384_SHA384_FIXED_SIGNING
                            },
                            der,
                            &rng,
                        )
                        .map_err(|e| bad(e.to_string()))?,
                    ),
                    Method::EdDsa => Signer::Ed25519(
                        signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                            .map_err(|e| bad(e.to_string()))?,
                    ),
                };
                let own_public: &[u8] = match &signer {
                    Signer::Rsa(k, _) => k.public_key().as_ref(),
                    Signer::Ecdsa(k) => k.public_key().as_ref(),
                    Signer::Ed25519(k) => k.public_key().as_ref(),
                };
                if own_public != public_key.as_slice() {
                    return Err("priv-key and pub-key are not one key pair".into());
                }
                Some(signer)
            }
        };
        Ok(Arc::new(Jwt {
            method,
            public: public_key,
            signer,
            ttl,
            rng: ring::rand::SystemRandom::new(),
        }))
    }

    /// A token for `user` at auth `revision`, or None if this member has no
    /// private key.
    pub fn issue(&self, user: &str, revision: u64) -> Option<String> {
        let signer = self.signer.as_ref()?;
        let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, self.method.name());
        let claims = serde_json::to_vec(&Claims {
            username: user.to_string(),
            revision,
            exp: now_secs() + self.ttl.as_secs(),
        })
        .ok()?;
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let sig = match signer {
            Signer::Rsa(k, enc) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(*enc, &self.rng, signed.as_bytes(), &mut sig).ok()?;
                sig
            }
            Signer::Ecdsa(k) => k.sign(&self.rng, signed.as_bytes()).ok()?.as_ref().to_vec(),
            Signer::Ed25519(k) => k.sign(signed.as_bytes()).as_ref().to_vec(),
        };
        Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The user and auth revision a valid, unexpired token of this key and
    /// method claims.
    pub fn verify(&self, token: &str) -> Option<(String, u64)> {
        let (signed, sig) = token.rsplit_once('.')?;
        let (header, claims) = signed.split_once('.')?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg")?.as_str()? != self.method.name() {
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        signature::UnparsedPublicKey::new(self.method.verification(), &self.public)
            .verify(signed.as_bytes(), &sig)
            .ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        (claims.exp > now_secs()).then_some((claims.username, claims.revision))
    }
}

/// The key bits of a SubjectPublicKeyInfo (PKCS#1 for RSA, the point for
/// ECDSA, 32 bytes for Ed25519: what ring verifies with).
fn subject_public_key(der: &[u8]) -> Option<Vec<u8>> {
    use spki::der::Decode;
    let info = spki::SubjectPublicKeyInfoRef::from_der(der).ok()?;
    Some(info.subject_public_key.raw_bytes().to_vec())
}

/// Go's durations as etcd's flags take them: `300s`, `5m`, `1h`, `1h30m`.
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("ttl {s:?} is not a duration such as 300s, 5m or 1h");
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es256_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let key = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        // SubjectPublicKeyInfo for a P-256 point: a fixed prefix, then the point.
        let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        spki.extend_from_slice(key.public_key().as_ref());
        let pem = |label: &str, der: &[u8]| {
            use base64::engine::general_purpose::STANDARD;
            format!(
                "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                STANDARD.encode(der)
            )
        };
        let (public, private) = (dir.join("jwt.pub"), dir.join("jwt.key"));
        std::fs::write(&public, pem("PUBLIC KEY", &spki)).unwrap();
        std::fs::write(&private, pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
        (public, private)
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn a_token_verifies_with_the_public_key_alone_and_not_when_altered() {
        let dir = tempfile::tempdir().unwrap();
        let (public, private) = es256_pair(dir.path());
        let opts = format!(
            "pub-key={},priv-key={},sign-method=ES256,ttl=5m",
            public.display(),
            private.display()
        );
        let issuer = Jwt::from_options(&opts).unwrap();
        let verifier =
            Jwt::from_options(&format!("pub-key={},sign-method=ES256", public.display())).unwrap();
        let t = issuer.issue("alice", 7).unwrap();
        assert_eq!(verifier.verify(&t), Some(("alice".into(), 7)));
        assert_eq!(
            verifier.issue("alice", 7),
            None,
            "no private key, no tokens"
        );
        // Another user's claims under alice's signature: refused.
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(r#"{"username":"root","revision":7,"exp":9999999999}"#);
        assert_eq!(verifier.verify(&parts.join(".")), None);
        assert_eq!(verifier.verify("not.a.token"), None);
        assert_eq!(verifier.verify(""), None);
        // The wrong method, a mismatched pair, bad options: clear errors.
        let e = Jwt::from_options(&format!(
            "pub-key={},sign-method=RS256,priv-key={}",
            public.display(),
            private.display()
        ));
        assert!(e.unwrap_err().contains("priv-key"));
        assert!(Jwt::from_options("sign-method=ES256")
            .unwrap_err()
            .contains("pub-key"));
        assert!(Jwt::from_options("pub-key=x,sign-method=HS256")
            .unwrap_err()
            .contains("HS256"));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (public, private) = es256_pair(dir.path());
        let j = Jwt::new(Method::Es256, &public, Some(&private), Duration::ZERO).unwrap();
        let t = j.issue("alice", 1).unwrap();
        assert_eq!(j.verify(&t), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
