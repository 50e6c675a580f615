//! The internal certificate authority that identifies node agents.
//!
//! The CA's certificate and key live in the database (`cluster_state`), so every control-plane
//! replica signs with the same CA; whoever can read the database can therefore mint node
//! certificates, which is why database access must be guarded like the CA key itself. Each
//! replica issues its own agent-listener certificate from the CA at startup.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::persistence::{Persistence, PersistenceError, cluster};

pub use castplane_proto::join_token::CONTROL_PLANE_SERVER_NAME;

const CA_STATE_NAME: &str = "internal_ca";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate signing request is invalid: {0}")]
    InvalidCsr(String),
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    #[error("a certificate valid for {0:?} would end past the year 9999")]
    ValidityTooLong(Duration),
    #[error("stored CA is unreadable: {0}")]
    CorruptCa(String),
    #[error(transparent)]
    Persistence(#[from] PersistenceError),
}

#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_pem: String,
}

pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued certificate.
pub struct IssuedCertificate {
    pub cert_pem: String,
    pub fingerprint: String,
    pub not_after_millis: i64,
}

/// The agent-listener's serving identity.
pub struct ServerIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertificateAuthority {
    /// Loads the cluster's CA, creating it on first start. Replicas racing to create it agree
    /// through the primary key: the loser discards its CA and loads the winner's.
    pub async fn load_or_create(persistence: &Persistence) -> Result<Self, PkiError> {
        let db = persistence.db();
        if let Some(existing) = cluster::get(db, CA_STATE_NAME).await? {
            return Self::from_stored(&parse_stored(&existing)?);
        }
        let candidate = serde_json::to_string(&generate_ca()?)
            .map_err(|e| PkiError::CorruptCa(e.to_string()))?;
        let stored = cluster::get_or_insert(db, CA_STATE_NAME, candidate.clone()).await?;
        if stored == candidate {
            tracing::info!("created the internal certificate authority");
        }
        Self::from_stored(&parse_stored(&stored)?)
    }

    fn from_stored(stored: &StoredCa) -> Result<Self, PkiError> {
        let key =
            KeyPair::from_pem(&stored.key_pem).map_err(|e| PkiError::CorruptCa(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(&stored.cert_pem, key)
            .map_err(|e| PkiError::CorruptCa(e.to_string()))?;
        let cert_der = pem_to_der(&stored.cert_pem)
            .ok_or_else(|| PkiError::CorruptCa("bad certificate PEM".into()))?;
        Ok(CertificateAuthority {
            cert_pem: stored.cert_pem.clone(),
            cert_der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (DER), hex: what join tokens carry for the agent to pin.
    pub fn fingerprint(&self) -> String {
        fingerprint_der(&self.cert_der)
    }

    /// Signs a node certificate for the key in `csr_pem`. Only the CSR's public key is used;
    /// the subject, usages and lifetime are ours, so a CSR cannot ask for more.
    pub fn issue_node_certificate(
        &self,
        csr_pem: &str,
        node_id: &str,
        validity: Duration,
    ) -> Result<IssuedCertificate, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::InvalidCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node_id);
        name.push(DnType::OrganizationName, "castplane node");
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let (not_before, not_after) = validity_window(validity)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            fingerprint: fingerprint_der(cert.der()),
            not_after_millis: (not_after.unix_timestamp_nanos() / 1_000_000) as i64,
        })
    }

    /// A serving certificate for this replica's agent listener.
    pub fn issue_server_identity(&self) -> Result<ServerIdentity, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![CONTROL_PLANE_SERVER_NAME.to_owned()])?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CONTROL_PLANE_SERVER_NAME);
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let (not_before, not_after) = validity_window(Duration::from_secs(365 * 24 * 3600))?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        // The chain carries the CA so a joining agent can check it against its pinned hash.
        Ok(ServerIdentity {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn parse_stored(value: &str) -> Result<StoredCa, PkiError> {
    serde_json::from_str(value).map_err(|e| PkiError::CorruptCa(e.to_string()))
}

fn generate_ca() -> Result<StoredCa, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "castplane internal CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (not_before, not_after) = validity_window(Duration::from_secs(10 * 365 * 24 * 3600))?;
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key)?;
    Ok(StoredCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Backdated a little, so a peer whose clock runs slightly behind still accepts it.
fn validity_window(validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    let now = OffsetDateTime::now_utc();
    let not_after = time::Duration::try_from(validity)
        .ok()
        .and_then(|v| now.checked_add(v))
        .ok_or(PkiError::ValidityTooLong(validity))?;
    Ok((now - time::Duration::minutes(5), not_after))
}

pub fn fingerprint_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|der| der.to_vec())
}
