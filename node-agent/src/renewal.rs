//! Node certificate renewal: a new key and CSR, signed over the current mTLS identity, well
//! before the certificate expires.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use castplane_proto::agent::v1::RenewCertificateRequest;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;

use crate::join::new_key_and_csr;
use crate::state::DataDir;
use crate::tls;

/// (not_before, not_after) of a PEM certificate, in Unix seconds.
pub fn validity(cert_pem: &str) -> anyhow::Result<(i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow!("bad certificate PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow!("bad certificate: {e}"))?;
    Ok((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// True once less than `remaining_share` of the certificate's lifetime is left.
pub fn due(data_dir: &DataDir, remaining_share: f64) -> anyhow::Result<bool> {
    let (not_before, not_after) = validity(&data_dir.read(&data_dir.cert_path())?)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let lifetime = (not_after - not_before).max(1) as f64;
    Ok(((not_after - now) as f64) < lifetime * remaining_share)
}

pub async fn renew(data_dir: &DataDir, url: &str) -> anyhow::Result<()> {
    let ca_pem = data_dir.read(&data_dir.ca_path())?;
    let tls_config = tls::mtls_client_config(
        &ca_pem,
        &data_dir.read(&data_dir.cert_path())?,
        &data_dir.read(&data_dir.key_path())?,
    )?;
    let channel = tls::connect(url, tls_config).await?;
    let (key, csr_pem) = new_key_and_csr("castplane-node")?;
    let response = AgentServiceClient::new(channel)
        .renew_certificate(RenewCertificateRequest { csr_pem })
        .await
        .map_err(|status| anyhow!("renewal refused: {}", status.message()))?
        .into_inner();
    // Renewal runs inside the live session: keep its fsyncs off the runtime.
    let data_dir = data_dir.clone();
    tokio::task::spawn_blocking(move || {
        data_dir.save_credentials(
            &key.serialize_pem(),
            &response.certificate_pem,
            &response.ca_certificate_pem,
        )
    })
    .await
    .context("storing the renewed certificate")?
    .context("storing the renewed certificate")?;
    tracing::info!("renewed the node certificate");
    Ok(())
}
