//! Certificates for a TLS cluster, made with rcgen: what `kvstore-server certs --out DIR
//! --nodes N` writes, and what tests use to build other authorities and expired certificates.
//!
//! Two authorities, so that holding a client certificate never lets anyone act as a node:
//!
//! - `ca.pem` (and `ca.key`): the cluster CA. It signs every node certificate (`node-<i>.pem`,
//!   used both to serve and, as the peer certificate, to call other nodes). Clients trust it
//!   (`kv --ca ca.pem`), nodes trust it for peers (`--peer-ca ca.pem`).
//! - `client-ca.pem` (and `client-ca.key`): signs client certificates (`client.pem`). Nodes
//!   check client certificates against it (`--ca client-ca.pem`, with `--client-cert-auth`).
//!
//! Node certificates carry the SANs 127.0.0.1, ::1, localhost and the node's name
//! (`node-<i>`), plus any extra host given. Keys are ECDSA P-256. Private keys are written
//! readable by the owner only.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("cannot make a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How long certificates made here are valid by default (from an hour ago, against small clock
/// differences between machines).
pub const DEFAULT_VALIDITY_DAYS: i64 = 365;

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A certificate authority that can issue leaf certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: Pem,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A node: serves (server auth) and calls other nodes (client auth).
    Node,
    /// A client: client auth only.
    Client,
}

fn validity(params: &mut CertificateParams, not_before: OffsetDateTime, not_after: OffsetDateTime) {
    params.not_before = not_before;
    params.not_after = not_after;
}

impl Authority {
    /// A new self-signed CA named `name`, valid for [`DEFAULT_VALIDITY_DAYS`] × 10.
    pub fn new(name: &str) -> Result<Self, CertError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "kvstore");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        validity(
            &mut params,
            now - Duration::hours(1),
            now + Duration::days(DEFAULT_VALIDITY_DAYS * 10),
        );
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA's certificate and key.
    pub fn pem(&self) -> &Pem {
        &self.pem
    }

    /// Issues a certificate for `name` with `hosts` as SANs (IP addresses or DNS names), valid
    /// from `not_before` to `not_after`.
    pub fn issue_valid(
        &self,
        name: &str,
        hosts: &[String],
        usage: Usage,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Pem, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for h in hosts {
            params
                .subject_alt_names
                .push(match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(h.clone().try_into()?),
                });
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "kvstore");
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        validity(&mut params, not_before, not_after);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Issues a certificate valid from an hour ago for [`DEFAULT_VALIDITY_DAYS`].
    pub fn issue(&self, name: &str, hosts: &[String], usage: Usage) -> Result<Pem, CertError> {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            name,
            hosts,
            usage,
            now - Duration::hours(1),
            now + Duration::days(DEFAULT_VALIDITY_DAYS),
        )
    }
}

/// The SANs of node `name`: loopback addresses, `localhost`, its name and `extra` hosts.
pub fn node_hosts(name: &str, extra: &[String]) -> Vec<String> {
    let mut h = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
        name.to_string(),
    ];
    h.extend(extra.iter().cloned());
    h
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, text).map_err(err)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

fn write_pair(dir: &Path, stem: &str, pem: &Pem) -> Result<[PathBuf; 2], CertError> {
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    write(&cert, &pem.cert, false)?;
    write(&key, &pem.key, true)?;
    Ok([cert, key])
}

/// Writes a cluster's certificates into `dir` (created if needed): `ca.pem`/`ca.key`,
/// `client-ca.pem`/`client-ca.key`, `node-<i>.pem`/`node-<i>.key` for i in 1..=`nodes`
/// (SANs from [`node_hosts`] with `extra_hosts`), and `client.pem`/`client.key`. Returns the
/// files written.
pub fn write_cluster(
    dir: &Path,
    nodes: u32,
    extra_hosts: &[String],
) -> Result<Vec<PathBuf>, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = Authority::new("kvstore cluster CA")?;
    let client_ca = Authority::new("kvstore client CA")?;
    let mut files = Vec::new();
    files.extend(write_pair(dir, "ca", ca.pem())?);
    files.extend(write_pair(dir, "client-ca", client_ca.pem())?);
    for i in 1..=nodes {
        let name = format!("node-{i}");
        let pem = ca.issue(&name, &node_hosts(&name, extra_hosts), Usage::Node)?;
        files.extend(write_pair(dir, &name, &pem)?);
    }
    let client = client_ca.issue("kvstore-client", &[], Usage::Client)?;
    files.extend(write_pair(dir, "client", &client)?);
    Ok(files)
}
