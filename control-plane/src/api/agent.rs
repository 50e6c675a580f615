//! `castplane.agent.v1.AgentService`: the agent listener. The node's identity always comes
//! from its verified client certificate, never from message fields. The session itself belongs
//! to the service layer's dispatcher; this authenticates, reads the Hello, and attaches.

use std::time::Duration;

use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_server::AgentService;
use tonic::{Request, Response, Status, Streaming};

use crate::service::records;
use crate::service::{ControlPlane, Hello};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentApi {
    pub control_plane: ControlPlane,
}

impl AgentApi {
    #[tracing::instrument(skip_all)]
    async fn authenticated_node<T>(&self, request: &Request<T>) -> Result<records::Node, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a node client certificate is required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a node client certificate is required"))?;
        Ok(self.control_plane.authenticate_node(leaf.as_ref()).await?)
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type SessionStream = crate::service::dispatch::OutboundStream;
    type FetchBlobStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<apb::BlobChunk, Status>> + Send + 'static>,
    >;

    #[tracing::instrument(skip_all)]
    async fn join(
        &self,
        request: Request<apb::JoinRequest>,
    ) -> Result<Response<apb::JoinResponse>, Status> {
        let r = request.into_inner();
        let joined = self.control_plane.join_node(&r.token, &r.csr_pem).await?;
        Ok(Response::new(apb::JoinResponse {
            node_id: joined.node.id,
            node_name: joined.node.name,
            certificate_pem: joined.certificate_pem,
            ca_certificate_pem: self.control_plane.ca().cert_pem().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn renew_certificate(
        &self,
        request: Request<apb::RenewCertificateRequest>,
    ) -> Result<Response<apb::RenewCertificateResponse>, Status> {
        let node = self.authenticated_node(&request).await?;
        let certificate_pem = self
            .control_plane
            .renew_node_certificate(&node, &request.get_ref().csr_pem)
            .await?;
        Ok(Response::new(apb::RenewCertificateResponse {
            certificate_pem,
            ca_certificate_pem: self.control_plane.ca().cert_pem().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn session(
        &self,
        request: Request<Streaming<apb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let node = self.authenticated_node(&request).await?;
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(apb::AgentMessage {
                body: Some(apb::agent_message::Body::Hello(hello)),
            }))) => hello,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message on a session must be a Hello",
                ));
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        let hello = Hello {
            agent_version: hello.agent_version,
            capabilities: hello.capabilities,
            services: hello.services,
        };
        let outbound = self
            .control_plane
            .attach_session(&node.id, hello, inbound)
            .await?;
        Ok(Response::new(outbound))
    }

    async fn fetch_blob(
        &self,
        request: Request<apb::FetchBlobRequest>,
    ) -> Result<Response<Self::FetchBlobStream>, Status> {
        use tokio_stream::StreamExt;
        let node = self.authenticated_node(&request).await?;
        let sha256 = request.into_inner().sha256;
        let bytes = self
            .control_plane
            .fetch_blob_for_node(&node.id, &sha256)
            .await?;
        let chunks = bytes.map(|chunk| {
            chunk
                .map(|data| apb::BlobChunk {
                    data: data.to_vec(),
                })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}
