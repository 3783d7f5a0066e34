//! TLS identities for the listeners (SIP over TLS now, HTTPS next): the certificate and key
//! from the operator's PEM files, or a self-signed pair generated once in the data
//! directory; a rustls server configuration built from them that SIGHUP can swap for new
//! connections while established ones keep theirs.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in the file", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: no PEM private key in the file (PKCS#8, PKCS#1 or SEC1)", .0.display())]
    NoKey(PathBuf),
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("certificate {} and key {} do not make a TLS identity: {source}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// Where a listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What [`TlsFiles::resolve`] did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The operator's files.
    Configured,
    /// A self-signed pair already in the data directory from an earlier start.
    Existing,
    /// A self-signed pair generated just now.
    Generated,
}

impl TlsFiles {
    /// The configured files, or else `<data_dir>/tls/<name>.crt` and `.key`, generated
    /// self-signed (for `hosts`: names and addresses) if they do not exist yet. The
    /// directory is 0700 and the key 0600: the key is a secret and the data directory may
    /// be shared with other services' users.
    pub fn resolve(
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
        name: &str,
        hosts: &[String],
    ) -> Result<(TlsFiles, Origin), TlsError> {
        if let (Some(cert), Some(key)) = (cert, key) {
            let files = TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            };
            return Ok((files, Origin::Configured));
        }
        let dir = data_dir.join("tls");
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        if files.cert.exists() && files.key.exists() {
            return Ok((files, Origin::Existing));
        }
        create_private_dir(&dir)?;
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        for h in hosts {
            if !names.contains(h) {
                names.push(h.clone());
            }
        }
        let generate = || -> Result<(String, String), rcgen::Error> {
            let mut params = rcgen::CertificateParams::new(names)?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(
                rcgen::DnType::CommonName,
                format!("dasan {name} (self-signed)"),
            );
            // Valid from the start of this year for ten years (rcgen's default runs from
            // 1975 to 4096, which some clients reject as absurd).
            let year = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| 1970 + (d.as_secs() / 31_556_952) as i32)
                .unwrap_or(2026);
            params.not_before = rcgen::date_time_ymd(year, 1, 1);
            params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
            let key = rcgen::KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            Ok((key.serialize_pem(), cert.pem()))
        };
        let (key, cert) = generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        write_private(&files.key, key.as_bytes())?;
        write_private(&files.cert, cert.as_bytes())?;
        Ok((files, Origin::Generated))
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let pem = read(&self.cert)?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem {
                path: self.cert.clone(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(self.cert.clone()));
        }
        Ok(chain)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        let pem = read(&self.key)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(self.key.clone()),
            e => TlsError::Pem {
                path: self.key.clone(),
                reason: e.to_string(),
            },
        })
    }

    /// A server configuration for these files: TLS 1.2 and 1.3 (rustls has nothing older),
    /// no client certificate asked for.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.server_config_for(None)
    }

    /// As [`Self::server_config`]; with `clients`, a client certificate is asked for
    /// (optional: phones have none) and checked by it.
    pub fn server_config_for(
        &self,
        clients: Option<Arc<PinnedClients>>,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = self.chain()?;
        let key = self.private_key()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .and_then(|b| {
                let b = match clients {
                    Some(c) => b.with_client_cert_verifier(c),
                    None => b.with_no_client_auth(),
                };
                b.with_single_cert(chain, key)
            })
            .map_err(|source| TlsError::Identity {
                cert: self.cert.clone(),
                key: self.key.clone(),
                source,
            })?;
        Ok(Arc::new(config))
    }

    /// SHA-256 of the leaf certificate, as `AB:CD:…` (what a phone's or browser's
    /// certificate dialog shows, and what a pinned-certificate setting takes).
    pub fn fingerprint(&self) -> Result<String, TlsError> {
        Ok(fingerprint(&self.chain()?[0]))
    }
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    fingerprint_bytes(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn fingerprint_bytes(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

/// Client certificates a listener accepts: those whose SHA-256 fingerprint is pinned (a
/// trunk's `tls_client_certs`), within their validity dates, and whose key signed the
/// handshake. A client without a certificate is let through (a phone, which proves
/// itself with digest); one with any other certificate fails the handshake.
///
/// With a CA (`sip.tls_client_ca`), a certificate that chains to it (within its dates,
/// for client authentication) is accepted too: its names (CN and DNS SANs) may then
/// identify a trunk by `tls_client_subjects`.
#[derive(Debug)]
pub struct PinnedClients {
    pins: Vec<[u8; 32]>,
    ca: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// Who a TLS client proved to be: its leaf certificate's SHA-256, and its names when the
/// certificate chains to the configured client CA (none otherwise: a pinned self-signed
/// certificate's names prove nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub fingerprint: [u8; 32],
    pub ca_names: Vec<String>,
}

impl PinnedClients {
    pub fn new(pins: Vec<[u8; 32]>) -> Self {
        PinnedClients {
            pins,
            ca: None,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// Also accepts certificates issued by the CAs in `ca_pem` (a PEM bundle).
    pub fn with_ca(mut self, ca_pem: &Path) -> Result<Self, TlsError> {
        let pem = read(ca_pem)?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            let c = c.map_err(|e| TlsError::Pem {
                path: ca_pem.to_path_buf(),
                reason: e.to_string(),
            })?;
            roots.add(c).map_err(|e| TlsError::Pem {
                path: ca_pem.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                path: ca_pem.to_path_buf(),
                reason: "no CA certificate in the file".into(),
            });
        }
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Pem {
            path: ca_pem.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.ca = Some(v);
        Ok(self)
    }

    /// The identity of a client that presented `chain` (leaf first) in a handshake this
    /// verifier passed.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<PeerIdentity> {
        let leaf = chain.first()?;
        let now = rustls::pki_types::UnixTime::now();
        let ca_names = match &self.ca {
            Some(ca) if ca.verify_client_cert(leaf, &chain[1..], now).is_ok() => names(leaf),
            _ => Vec::new(),
        };
        Some(PeerIdentity {
            fingerprint: fingerprint_bytes(leaf),
            ca_names,
        })
    }
}

/// A certificate's subject CN and DNS subject-alternative names, lower case.
fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = c
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push(d.to_ascii_lowercase());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

impl rustls::server::danger::ClientCertVerifier for PinnedClients {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.ca.as_ref().map_or(&[], |ca| ca.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        use rustls::CertificateError;
        let refuse = |e| Err(rustls::Error::InvalidCertificate(e));
        if !self.pins.contains(&fingerprint_bytes(end_entity)) {
            return match &self.ca {
                Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
                None => refuse(CertificateError::ApplicationVerificationFailure),
            };
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return refuse(CertificateError::BadEncoding);
        };
        let t = now.as_secs() as i64;
        let v = cert.validity();
        if t < v.not_before.timestamp() {
            return refuse(CertificateError::NotValidYet);
        }
        if t > v.not_after.timestamp() {
            return refuse(CertificateError::Expired);
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A listener's current server configuration. New connections take [`Self::current`];
/// [`Self::reload`] (SIGHUP) rereads the files and swaps it, and a failed reload keeps the
/// old one, so a half-copied certificate never takes the listener down.
pub struct Reloadable {
    files: TlsFiles,
    clients: Option<Arc<PinnedClients>>,
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    pub fn new(files: TlsFiles) -> Result<Self, TlsError> {
        Reloadable::with_clients(files, None)
    }

    /// With client certificates checked by `clients` (see [`PinnedClients`]).
    pub fn with_clients(
        files: TlsFiles,
        clients: Option<Arc<PinnedClients>>,
    ) -> Result<Self, TlsError> {
        let config = files.server_config_for(clients.clone())?;
        Ok(Reloadable {
            files,
            clients,
            current: RwLock::new(config),
        })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The identity of a client that presented `chain` (see [`PinnedClients::identify`]);
    /// without client verification, its fingerprint alone.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Option<PeerIdentity> {
        match &self.clients {
            Some(c) => c.identify(chain),
            None => chain.first().map(|leaf| PeerIdentity {
                fingerprint: fingerprint_bytes(leaf),
                ca_names: Vec::new(),
            }),
        }
    }

    /// Rereads the files; on success new connections get the new certificate, whose
    /// fingerprint is returned.
    pub fn reload(&self) -> Result<String, TlsError> {
        let config = self.files.server_config_for(self.clients.clone())?;
        let fp = self.files.fingerprint()?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(fp)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes a file only its owner can read, created with that mode (no window in which it
/// is world-readable).
fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dasan-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_self_signed_identity_is_generated_once_with_private_modes() {
        let dir = tmp("gen");
        let (files, origin) =
            TlsFiles::resolve(None, None, &dir, "sip", &["sip.example.org".into()]).unwrap();
        assert_eq!(origin, Origin::Generated);
        let fp = files.fingerprint().unwrap();
        assert_eq!(fp.len(), 32 * 3 - 1);
        files.server_config().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&files.key), 0o600);
            assert_eq!(mode(&files.cert), 0o600);
            assert_eq!(mode(&dir.join("tls")), 0o700);
        }
        // A second start finds the same pair: phones that pinned it keep working.
        let (again, origin) = TlsFiles::resolve(None, None, &dir, "sip", &[]).unwrap();
        assert_eq!(origin, Origin::Existing);
        assert_eq!(again.fingerprint().unwrap(), fp);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn broken_files_are_errors_that_name_the_file() {
        let dir = tmp("bad");
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let (files, origin) = TlsFiles::resolve(Some(&cert), Some(&key), &dir, "sip", &[]).unwrap();
        assert_eq!(origin, Origin::Configured);
        let e = files.server_config().unwrap_err().to_string();
        assert!(
            e.contains("c.pem") && e.contains("no PEM certificate"),
            "{e}"
        );

        // A real certificate with another certificate's key.
        let (a, _) = TlsFiles::resolve(None, None, &dir.join("a"), "sip", &[]).unwrap();
        let (b, _) = TlsFiles::resolve(None, None, &dir.join("b"), "sip", &[]).unwrap();
        let mixed = TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let e = mixed.server_config().unwrap_err().to_string();
        assert!(e.contains("do not make a TLS identity"), "{e}");
        let missing = TlsFiles {
            cert: dir.join("nope.crt"),
            key: a.key.clone(),
        };
        assert!(missing
            .server_config()
            .unwrap_err()
            .to_string()
            .contains("nope.crt"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_certificates_must_be_pinned_and_within_their_dates() {
        use rustls::server::danger::ClientCertVerifier;
        let make = |from: i32, to: i32| {
            let mut p = rcgen::CertificateParams::new(vec!["trunk.example".into()]).unwrap();
            p.not_before = rcgen::date_time_ymd(from, 1, 1);
            p.not_after = rcgen::date_time_ymd(to, 1, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            CertificateDer::from(p.self_signed(&key).unwrap().der().to_vec())
        };
        let (good, expired, future, other) = (
            make(2020, 2040),
            make(2020, 2021),
            make(2035, 2040),
            make(2020, 2040),
        );
        let v = PinnedClients::new(vec![
            fingerprint_bytes(&good),
            fingerprint_bytes(&expired),
            fingerprint_bytes(&future),
        ]);
        // 2026-12-03.
        let now = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            1_796_256_000,
        ));
        let check = |c: &CertificateDer<'_>| v.verify_client_cert(c, &[], now).map(|_| ());
        assert!(check(&good).is_ok());
        let err = |c| match check(c) {
            Err(rustls::Error::InvalidCertificate(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(&expired), rustls::CertificateError::Expired);
        assert_eq!(err(&future), rustls::CertificateError::NotValidYet);
        assert_eq!(
            err(&other),
            rustls::CertificateError::ApplicationVerificationFailure
        );
        assert!(v.offer_client_auth() && !v.client_auth_mandatory());
    }

    #[test]
    fn a_failed_reload_keeps_the_old_identity() {
        let dir = tmp("reload");
        let (files, _) = TlsFiles::resolve(None, None, &dir, "sip", &[]).unwrap();
        let r = Reloadable::new(files.clone()).unwrap();
        let before = Arc::as_ptr(&r.current());
        std::fs::write(&files.cert, "half a file").unwrap();
        assert!(r.reload().is_err());
        assert_eq!(Arc::as_ptr(&r.current()), before);
        // A new pair in place: the reload takes it.
        std::fs::remove_file(&files.cert).unwrap();
        std::fs::remove_file(&files.key).unwrap();
        let (fresh, _) = TlsFiles::resolve(None, None, &dir, "sip", &[]).unwrap();
        let fp = r.reload().unwrap();
        assert_eq!(fp, fresh.fingerprint().unwrap());
        assert_ne!(Arc::as_ptr(&r.current()), before);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
