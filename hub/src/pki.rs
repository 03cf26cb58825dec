//! The hub's certificate authority: one self-signed CA kept in the data directory, and the
//! server certificates it issues for the hub's TLS listeners (HTTP API, MQTT).
//!
//! Invariant: every certificate is valid from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z
//! (RFC 5280's "no well-defined expiration"). Edge devices without a battery-backed clock
//! boot believing it is 1970, others run years off; a certificate with a real validity window
//! would be refused by them until their clock is right, and they often need the network (and
//! so TLS) to set it. Trust therefore rests on the CA alone: agents pin [`Ca::fingerprint`]
//! when they enroll, and a server key is replaced by issuing a new certificate, not by
//! waiting for one to expire.
//!
//! Keys are ECDSA P-256, generated and used through rcgen's ring backend.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// The CA certificate's file name in the CA directory (PEM, mode 0644).
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key's file name in the CA directory (PEM, PKCS#8, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// The common name of a CA made by [`Ca::load_or_create`].
const CA_COMMON_NAME: &str = "Shoal hub CA";
/// The common name of every server certificate; clients check the SANs, not this.
const SERVER_COMMON_NAME: &str = "Shoal hub";

/// 9999-12-31T23:59:59Z in seconds since the Unix epoch.
const NOT_AFTER_UNIX: i64 = 253_402_300_799;

const PRIVATE_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot draw a random serial number: {source}")]
    Random { source: getrandom::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a PEM {what} ({source}): restore it from a backup")]
    Parse {
        path: PathBuf,
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("{cert} does not belong to the key in {key}: restore the matching pair from a backup")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "found {present} but not {missing}: restore {missing} from a backup, or remove {present} \
         to create a new CA (every node must then enroll again)"
    )]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("a server certificate needs at least one IP address or DNS name")]
    NoNames,
    #[error("`{value}` is neither an IP address nor a valid DNS name")]
    InvalidName { value: String },
}

/// The hub's certificate authority: a self-signed CA certificate and its signing key.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    fingerprint: String,
}

impl fmt::Debug for Ca {
    /// Shows which CA this is, never its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA with a fresh key, in memory only.
    pub fn generate(common_name: &str) -> Result<Ca, PkiError> {
        let key = new_key("generate the CA key")?;
        let params = ca_params(common_name)?;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "sign the CA certificate",
                source,
            })?;
        Ok(Ca::from_parts(
            Issuer::new(params, key),
            cert.der().clone(),
            cert.pem(),
        ))
    }

    /// Reads the CA from `dir/ca.crt` and `dir/ca.key`, or creates both (and `dir`, 0700) when
    /// neither exists. Refuses when only one of the two exists: replacing the CA would lock
    /// out every node that pinned it, so that takes an operator's decision.
    pub fn load_or_create(dir: &Path) -> Result<Ca, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = read_if_present(&cert_path)?;
        let key_pem = read_if_present(&key_path)?;
        match (cert_pem, key_pem) {
            (Some(cert_pem), Some(key_pem)) => {
                warn_if_readable_by_others(&key_path);
                let ca = Ca::from_pem(&cert_pem, &key_pem, &cert_path, &key_path)?;
                tracing::debug!(path = %cert_path.display(), fingerprint = %ca.fingerprint, "loaded the hub CA");
                Ok(ca)
            }
            (None, None) => {
                let ca = Ca::generate(CA_COMMON_NAME)?;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| PkiError::Write {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                // The key first: a crash between the two leaves a key without a certificate,
                // which `load_or_create` refuses with a message, never a certificate that
                // nothing can sign for.
                write_atomically(
                    &key_path,
                    ca.issuer.key().serialize_pem().as_bytes(),
                    PRIVATE_MODE,
                )?;
                write_atomically(&cert_path, ca.cert_pem.as_bytes(), PUBLIC_MODE)?;
                tracing::info!(path = %cert_path.display(), fingerprint = %ca.fingerprint, "created the hub CA");
                Ok(ca)
            }
            (Some(_), None) => Err(PkiError::HalfPair {
                present: cert_path,
                missing: key_path,
            }),
            (None, Some(_)) => Err(PkiError::HalfPair {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// The CA certificate in PEM, as agents and other clients add it to their trust roots.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Lowercase hex SHA-256 of the DER certificate (64 characters, no separators): what
    /// agents pin when they enroll.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A server certificate for `names`, each an IP address (IP SAN) or a DNS name (DNS SAN),
    /// with a fresh key.
    pub fn issue_server(&self, names: &[impl AsRef<str>]) -> Result<ServerCert, PkiError> {
        self.issue_server_valid(names, OffsetDateTime::UNIX_EPOCH, not_after())
    }

    /// [`Ca::issue_server`] with another validity, for tests that show the default matters.
    fn issue_server_valid(
        &self,
        names: &[impl AsRef<str>],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<ServerCert, PkiError> {
        let mut params = server_params(names)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = new_key("generate a server key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: "sign a server certificate",
                source,
            })?;
        Ok(ServerCert {
            cert_chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            chain_der: vec![cert.der().clone(), self.cert_der.clone()],
            key_der: key.serialize_der(),
        })
    }

    fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| PkiError::Parse {
            path: key_path.to_path_buf(),
            what: "private key",
            source,
        })?;
        let parse_error = |source| PkiError::Parse {
            path: cert_path.to_path_buf(),
            what: "certificate",
            source,
        };
        let der = pem_der(cert_pem).ok_or(parse_error(rcgen::Error::CouldNotParseCertificate))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| parse_error(rcgen::Error::CouldNotParseCertificate))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(parse_error)?;
        Ok(Ca::from_parts(issuer, der, cert_pem.to_string()))
    }

    fn from_parts(
        issuer: Issuer<'static, KeyPair>,
        cert_der: CertificateDer<'static>,
        cert_pem: String,
    ) -> Ca {
        let fingerprint = shoal_model::api::ca_fingerprint(&cert_der);
        Ca {
            issuer,
            cert_der,
            cert_pem,
            fingerprint,
        }
    }
}

/// A server certificate and its key, as issued by [`Ca::issue_server`].
pub struct ServerCert {
    cert_chain_pem: String,
    key_pem: String,
    chain_der: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl fmt::Debug for ServerCert {
    /// Shows the certificates, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .finish_non_exhaustive()
    }
}

impl ServerCert {
    /// The server certificate then the CA certificate, in PEM.
    pub fn cert_chain_pem(&self) -> &str {
        &self.cert_chain_pem
    }

    /// The private key in PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The chain for rustls: the server certificate then the CA certificate.
    pub fn cert_chain_der(&self) -> Vec<CertificateDer<'static>> {
        self.chain_der.clone()
    }

    /// The private key for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes the chain (mode 0644) and the key (mode 0600), each atomically (a temporary file
    /// in the same folder, then a rename), for servers that read PEM files.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), PkiError> {
        write_atomically(key_path, self.key_pem.as_bytes(), PRIVATE_MODE)?;
        write_atomically(cert_path, self.cert_chain_pem.as_bytes(), PUBLIC_MODE)
    }
}

/// 9999-12-31T23:59:59Z.
fn not_after() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOT_AFTER_UNIX).expect("year 9999 is within time's range")
}

fn ca_params(common_name: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(common_name);
    params.not_before = OffsetDateTime::UNIX_EPOCH;
    params.not_after = not_after();
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn server_params(names: &[impl AsRef<str>]) -> Result<CertificateParams, PkiError> {
    if names.is_empty() {
        return Err(PkiError::NoNames);
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|name| subject_alt_name(name.as_ref()))
        .collect::<Result<_, _>>()?;
    params.distinguished_name = distinguished_name(SERVER_COMMON_NAME);
    params.not_before = OffsetDateTime::UNIX_EPOCH;
    params.not_after = not_after();
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// An IP address becomes an IP SAN, anything else must be a DNS name as rustls clients
/// accept them.
fn subject_alt_name(value: &str) -> Result<SanType, PkiError> {
    let invalid = || PkiError::InvalidName {
        value: value.to_string(),
    };
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    rustls::pki_types::DnsName::try_from(value).map_err(|_| invalid())?;
    let name = value.to_string().try_into().map_err(|_| invalid())?;
    Ok(SanType::DnsName(name))
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn new_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| PkiError::Generate { what, source })
}

/// 20 random bytes, positive (RFC 5280 allows at most 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|source| PkiError::Random { source })?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The DER contents of the first PEM block in `pem`, if it is a certificate.
fn pem_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn read_if_present(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the hub CA key is readable by other users: run `chmod 600` on it");
        }
    }
}

/// Writes `bytes` to a temporary file next to `path` with exactly `mode`, flushes it to disk,
/// and renames it over `path`: readers see the old file or the new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let error = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| error(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(temp_name);
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(source) if source.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(error(source)),
    }
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        // The umask may have cleared bits of `mode`; set it exactly before any content.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    tracing::debug!(path = %path.display(), mode = format!("{mode:o}"), ok = written.is_ok(), "wrote file");
    written.map_err(error)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{ServerName, UnixTime};
    use rustls::{CertificateError, RootCertStore};
    use sha2::{Digest, Sha256};
    use x509_parser::oid_registry::{OID_EC_P256, OID_SIG_ECDSA_WITH_SHA256};
    use x509_parser::prelude::{GeneralName, X509Certificate};

    use super::*;

    /// A device that booted without a clock, a minute ago.
    const BOOTED_IN_1970: u64 = 60;
    /// 2200-01-01T00:00:00Z.
    const YEAR_2200: u64 = 7_258_118_400;

    fn at(seconds: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(seconds))
    }

    fn verifier(root: &Ca) -> Arc<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        roots
            .add(root.cert_der().clone())
            .expect("the CA certificate is a valid trust anchor");
        WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .expect("a verifier with one root")
    }

    /// What a rustls client decides about a server certificate.
    #[derive(Debug, PartialEq)]
    enum Verdict {
        Accepted,
        NotValidYet,
        Expired,
        WrongName,
        UnknownIssuer,
    }

    fn verdict(result: Result<ServerCertVerified, rustls::Error>) -> Verdict {
        use CertificateError::*;
        match result {
            Ok(_) => Verdict::Accepted,
            Err(rustls::Error::InvalidCertificate(error)) => match error {
                NotValidYet | NotValidYetContext { .. } => Verdict::NotValidYet,
                Expired | ExpiredContext { .. } => Verdict::Expired,
                NotValidForName | NotValidForNameContext { .. } => Verdict::WrongName,
                UnknownIssuer => Verdict::UnknownIssuer,
                other => panic!("unexpected certificate error {other:?}"),
            },
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }

    #[derive(Clone, Copy)]
    enum Signer {
        HubCa,
        OtherCa,
    }

    #[derive(Clone, Copy)]
    enum Validity {
        /// What `issue_server` does: from the epoch to the end of 9999.
        Default,
        /// The control: from the moment of issue, as most tools do.
        FromNow,
    }

    struct Case {
        name: &'static str,
        signer: Signer,
        validity: Validity,
        san: &'static str,
        server_name: &'static str,
        now: Option<u64>,
        expected: Verdict,
    }

    fn check(case: Case, hub: &Ca, other: &Ca) {
        let signer = match case.signer {
            Signer::HubCa => hub,
            Signer::OtherCa => other,
        };
        let not_before = match case.validity {
            Validity::Default => OffsetDateTime::UNIX_EPOCH,
            Validity::FromNow => OffsetDateTime::now_utc(),
        };
        let cert = signer
            .issue_server_valid(&[case.san], not_before, not_after())
            .expect("issue");
        let chain = cert.cert_chain_der();
        let now = case.now.map_or_else(UnixTime::now, at);
        let server_name = ServerName::try_from(case.server_name).expect("a valid server name");
        let result =
            verifier(hub).verify_server_cert(&chain[0], &chain[1..], &server_name, &[], now);
        assert_eq!(verdict(result), case.expected, "{}", case.name);
    }

    #[test]
    fn server_certificates_are_accepted_at_any_clock_and_only_for_their_names() {
        use Signer::*;
        use Validity::*;
        let hub = Ca::generate("hub").expect("hub CA");
        let other = Ca::generate("other").expect("other CA");
        #[rustfmt::skip]
        let cases = [
            Case { name: "ip san, device booted in 1970", signer: HubCa, validity: Default, san: "192.0.2.7", server_name: "192.0.2.7", now: Some(BOOTED_IN_1970), expected: Verdict::Accepted },
            Case { name: "ip san, today", signer: HubCa, validity: Default, san: "192.0.2.7", server_name: "192.0.2.7", now: None, expected: Verdict::Accepted },
            Case { name: "ip san, year 2200", signer: HubCa, validity: Default, san: "192.0.2.7", server_name: "192.0.2.7", now: Some(YEAR_2200), expected: Verdict::Accepted },
            Case { name: "ipv6 san, today", signer: HubCa, validity: Default, san: "::1", server_name: "::1", now: None, expected: Verdict::Accepted },
            Case { name: "dns san, device booted in 1970", signer: HubCa, validity: Default, san: "hub.example", server_name: "hub.example", now: Some(BOOTED_IN_1970), expected: Verdict::Accepted },
            Case { name: "dns san, today", signer: HubCa, validity: Default, san: "hub.example", server_name: "hub.example", now: None, expected: Verdict::Accepted },
            Case { name: "dns san, year 2200", signer: HubCa, validity: Default, san: "hub.example", server_name: "hub.example", now: Some(YEAR_2200), expected: Verdict::Accepted },
            Case { name: "last second of 9999", signer: HubCa, validity: Default, san: "hub.example", server_name: "hub.example", now: Some(253_402_300_799), expected: Verdict::Accepted },
            Case { name: "year 10000 (not_after is there)", signer: HubCa, validity: Default, san: "hub.example", server_name: "hub.example", now: Some(253_402_300_800), expected: Verdict::Expired },
            Case { name: "wrong dns name", signer: HubCa, validity: Default, san: "hub.example", server_name: "other.example", now: None, expected: Verdict::WrongName },
            Case { name: "wrong ip address", signer: HubCa, validity: Default, san: "192.0.2.7", server_name: "192.0.2.8", now: None, expected: Verdict::WrongName },
            Case { name: "ip san does not match a dns name", signer: HubCa, validity: Default, san: "192.0.2.7", server_name: "hub.example", now: None, expected: Verdict::WrongName },
            Case { name: "issued by another CA", signer: OtherCa, validity: Default, san: "hub.example", server_name: "hub.example", now: None, expected: Verdict::UnknownIssuer },
            Case { name: "control: valid from now, today", signer: HubCa, validity: FromNow, san: "hub.example", server_name: "hub.example", now: None, expected: Verdict::Accepted },
            Case { name: "control: valid from now, device booted in 1970", signer: HubCa, validity: FromNow, san: "hub.example", server_name: "hub.example", now: Some(BOOTED_IN_1970), expected: Verdict::NotValidYet },
        ];
        for case in cases {
            check(case, &hub, &other);
        }
    }

    fn parsed(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der)
            .expect("a DER certificate")
            .1
    }

    fn assert_valid_from_epoch_to_9999(cert: &X509Certificate<'_>) {
        assert_eq!(cert.validity().not_before.timestamp(), 0);
        assert_eq!(cert.validity().not_after.timestamp(), NOT_AFTER_UNIX);
        assert_eq!(
            cert.validity().not_after.to_datetime().to_string(),
            "9999-12-31 23:59:59.0 +00:00:00"
        );
    }

    fn assert_ecdsa_p256(cert: &X509Certificate<'_>) {
        assert_eq!(
            cert.signature_algorithm.algorithm,
            OID_SIG_ECDSA_WITH_SHA256
        );
        let curve = cert
            .public_key()
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .expect("an EC curve parameter");
        assert_eq!(curve, OID_EC_P256);
    }

    #[test]
    fn the_ca_is_a_p256_ca_for_signing_certificates_only_valid_from_1970_to_9999() {
        let ca = Ca::generate("Test CA").expect("CA");
        let cert = parsed(ca.cert_der());
        assert_valid_from_epoch_to_9999(&cert);
        assert_ecdsa_p256(&cert);
        let constraints = cert
            .basic_constraints()
            .expect("one basic constraints extension")
            .expect("basic constraints");
        assert!(constraints.critical);
        assert!(constraints.value.ca);
        assert_eq!(constraints.value.path_len_constraint, Some(0));
        let usage = cert.key_usage().expect("one key usage").expect("key usage");
        assert!(usage.value.key_cert_sign() && usage.value.crl_sign());
        assert!(!usage.value.digital_signature());
        assert_eq!(cert.subject().to_string(), "CN=Test CA");
    }

    #[test]
    fn a_server_certificate_is_a_p256_server_auth_leaf_valid_from_1970_to_9999() {
        let ca = Ca::generate("Test CA").expect("CA");
        let issued = ca
            .issue_server(&["10.0.0.1", "hub.example"])
            .expect("server cert");
        let chain = issued.cert_chain_der();
        assert_eq!(chain.len(), 2);
        assert_eq!(&chain[1], ca.cert_der());
        let cert = parsed(&chain[0]);
        assert_valid_from_epoch_to_9999(&cert);
        assert_ecdsa_p256(&cert);
        assert_eq!(cert.issuer(), parsed(ca.cert_der()).subject());
        let constraints = cert.basic_constraints().expect("one").expect("present");
        assert!(!constraints.value.ca);
        let usage = cert.key_usage().expect("one").expect("present");
        assert!(usage.value.digital_signature() && !usage.value.key_cert_sign());
        let eku = cert.extended_key_usage().expect("one").expect("present");
        assert!(eku.value.server_auth && !eku.value.client_auth);
        let sans = cert
            .subject_alternative_name()
            .expect("one")
            .expect("present");
        let sans: Vec<String> = sans
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => format!("dns:{dns}"),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["ip:[10, 0, 0, 1]", "dns:hub.example"]);
    }

    #[test]
    fn two_server_certificates_have_different_keys_and_serials() {
        let ca = Ca::generate("Test CA").expect("CA");
        let first = ca.issue_server(&["hub.example"]).expect("first");
        let second = ca.issue_server(&["hub.example"]).expect("second");
        assert_ne!(first.key_pem(), second.key_pem());
        let (first, second) = (first.cert_chain_der(), second.cert_chain_der());
        assert_ne!(parsed(&first[0]).serial, parsed(&second[0]).serial);
    }

    #[test]
    fn server_names_must_be_ip_addresses_or_dns_names() {
        let ca = Ca::generate("Test CA").expect("CA");
        for value in [
            "",
            " ",
            "exa mple.example",
            "hub..example",
            "[::1]",
            "10.0.0.1:8443",
            "-",
        ] {
            let error = ca.issue_server(&["hub.example", value]).expect_err(value);
            assert!(
                matches!(&error, PkiError::InvalidName { value: v } if v == value),
                "{value:?}: {error:?}"
            );
            assert!(error.to_string().contains(&format!("`{value}`")), "{error}");
        }
        let none: [&str; 0] = [];
        assert!(matches!(ca.issue_server(&none), Err(PkiError::NoNames)));
    }

    #[test]
    fn the_fingerprint_is_the_lowercase_hex_sha256_of_the_pem_certificate() {
        let ca = Ca::generate("Test CA").expect("CA");
        let der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("PEM");
        let digest = Sha256::digest(&der);
        assert_eq!(ca.fingerprint().len(), 64);
        assert_eq!(ca.fingerprint(), shoal_model::hex::encode(&digest));
        assert!(ca
            .fingerprint()
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn load_or_create_returns_the_same_ca_the_second_time() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("pki");
        let created = Ca::load_or_create(&dir).expect("create");
        let loaded = Ca::load_or_create(&dir).expect("load");
        assert_eq!(created.fingerprint(), loaded.fingerprint());
        assert_eq!(created.cert_pem(), loaded.cert_pem());
        // The loaded CA signs with the same key and issuer name: the first CA trusts its work.
        let issued = loaded.issue_server(&["hub.example"]).expect("issue");
        let chain = issued.cert_chain_der();
        let name = ServerName::try_from("hub.example").expect("name");
        let result = verifier(&created).verify_server_cert(
            &chain[0],
            &chain[1..],
            &name,
            &[],
            at(BOOTED_IN_1970),
        );
        assert_eq!(verdict(result), Verdict::Accepted);
    }

    #[test]
    fn ca_files_have_key_mode_0600_and_certificate_mode_0644_and_no_leftovers() {
        let temp = tempfile::tempdir().expect("tempdir");
        Ca::load_or_create(temp.path()).expect("create");
        assert_eq!(mode(&temp.path().join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&temp.path().join(CA_CERT_FILE)), 0o644);
        assert_eq!(entries(temp.path()), [CA_CERT_FILE, CA_KEY_FILE]);
    }

    #[test]
    fn a_half_present_ca_pair_is_refused_and_left_alone() {
        for (keep, remove) in [(CA_CERT_FILE, CA_KEY_FILE), (CA_KEY_FILE, CA_CERT_FILE)] {
            let temp = tempfile::tempdir().expect("tempdir");
            Ca::load_or_create(temp.path()).expect("create");
            let (kept, removed) = (temp.path().join(keep), temp.path().join(remove));
            let before = fs::read(&kept).expect("read");
            fs::remove_file(&removed).expect("remove");
            let error = Ca::load_or_create(temp.path()).expect_err("half a pair");
            match &error {
                PkiError::HalfPair { present, missing } => {
                    assert_eq!((present, missing), (&kept, &removed));
                }
                other => panic!("{keep} alone: {other:?}"),
            }
            assert!(error
                .to_string()
                .contains("every node must then enroll again"));
            assert_eq!(fs::read(&kept).expect("read"), before);
            assert!(!removed.exists());
        }
    }

    #[test]
    fn a_ca_certificate_with_another_ca_key_is_refused() {
        let (one, two) = (
            tempfile::tempdir().expect("one"),
            tempfile::tempdir().expect("two"),
        );
        Ca::load_or_create(one.path()).expect("first CA");
        Ca::load_or_create(two.path()).expect("second CA");
        fs::copy(two.path().join(CA_KEY_FILE), one.path().join(CA_KEY_FILE)).expect("copy");
        let error = Ca::load_or_create(one.path()).expect_err("mismatched pair");
        assert!(matches!(error, PkiError::KeyMismatch { .. }), "{error:?}");
    }

    #[test]
    fn a_damaged_ca_certificate_is_refused() {
        let temp = tempfile::tempdir().expect("tempdir");
        Ca::load_or_create(temp.path()).expect("create");
        fs::write(temp.path().join(CA_CERT_FILE), "not a certificate\n").expect("write");
        let error = Ca::load_or_create(temp.path()).expect_err("damaged");
        assert!(
            matches!(
                error,
                PkiError::Parse {
                    what: "certificate",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn server_cert_files_hold_the_chain_mode_0644_and_the_key_mode_0600() {
        let temp = tempfile::tempdir().expect("tempdir");
        let ca = Ca::generate("Test CA").expect("CA");
        let issued = ca.issue_server(&["127.0.0.1"]).expect("issue");
        let (cert_path, key_path) = (temp.path().join("api.crt"), temp.path().join("api.key"));
        issued.write(&cert_path, &key_path).expect("write");
        assert_eq!(mode(&cert_path), 0o644);
        assert_eq!(mode(&key_path), 0o600);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .expect("open")
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
        assert_eq!(chain, issued.cert_chain_der());
        let key = PrivateKeyDer::from_pem_file(&key_path).expect("PEM key");
        assert_eq!(key, issued.key_der());
        assert_eq!(entries(temp.path()), ["api.crt", "api.key"]);
    }
}
