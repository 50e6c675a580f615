//! `castplane-agent join`: trades a one-time join token for the node's certificate.

use anyhow::{Context, bail};
use castplane_proto::agent::v1::JoinRequest;
use castplane_proto::agent::v1::agent_service_client::AgentServiceClient;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::state::{DataDir, NodeIdentity};
use crate::tls;

/// A fresh key pair and a CSR for it. The key never leaves this host.
pub fn new_key_and_csr(common_name: &str) -> anyhow::Result<(KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

/// Joins through the first of `control_plane_urls` that answers, and records all of them: the
/// agent fails over between them.
pub async fn join(
    control_plane_urls: &[String],
    token: &str,
    data_dir: &DataDir,
) -> anyhow::Result<NodeIdentity> {
    let Some((first, _)) = control_plane_urls.split_first() else {
        bail!("no control-plane URL given");
    };
    for url in control_plane_urls {
        tls::host_port(url)?;
    }
    let mut last_error = None;
    for url in control_plane_urls {
        match join_through(url, token, data_dir).await {
            Ok(response) => {
                let identity = NodeIdentity {
                    node_id: response.node_id,
                    node_name: response.node_name,
                    control_plane_url: url.clone(),
                    other_control_plane_urls: control_plane_urls
                        .iter()
                        .filter(|u| *u != url)
                        .cloned()
                        .collect(),
                };
                data_dir.save_identity(&identity)?;
                tracing::info!(node_id = %identity.node_id, node_name = %identity.node_name, "joined the control plane");
                return Ok(identity);
            }
            Err(err) if control_plane_urls.len() > 1 => {
                tracing::warn!(control_plane = %url, error = format!("{err:#}"), "join failed; trying the next control-plane endpoint");
                last_error = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("could not join through {first}")))
}

async fn join_through(
    control_plane_url: &str,
    token: &str,
    data_dir: &DataDir,
) -> anyhow::Result<castplane_proto::agent::v1::JoinResponse> {
    let (_, ca_hash) = castplane_proto::join_token::parse(token).ok_or_else(|| {
        anyhow::anyhow!("not a castplane join token (expected cpjoin.<secret>.<ca sha256>)")
    })?;
    data_dir.create()?;
    if data_dir.is_joined() {
        bail!(
            "{} already holds a joined node; use a fresh data directory to join again",
            data_dir.root().display()
        );
    }
    let (key, csr_pem) = new_key_and_csr("castplane-node")?;
    // Verified against the token's CA hash before the token is sent.
    let channel = tls::connect(control_plane_url, tls::pinned_client_config(ca_hash)?).await?;
    let response = AgentServiceClient::new(channel)
        .join(JoinRequest {
            token: token.trim().to_owned(),
            csr_pem,
        })
        .await
        .map_err(|status| anyhow::anyhow!("join refused: {}", status.message()))?
        .into_inner();
    data_dir
        .save_credentials(
            &key.serialize_pem(),
            &response.certificate_pem,
            &response.ca_certificate_pem,
        )
        .context("storing the node's credentials")?;
    Ok(response)
}
