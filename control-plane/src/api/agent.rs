//! `castplane.agent.v1.AgentService`: the agent listener. The node's identity always comes
//! from its verified client certificate, never from message fields.

use std::pin::Pin;
use std::time::{Duration, Instant};

use castplane_proto::agent::v1 as apb;
use castplane_proto::agent::v1::agent_service_server::AgentService;
use castplane_proto::v1 as pb;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::convert::stats_to_json;
use crate::clock::now_millis;
use crate::domain::{ActionKind, ActionState, DesiredState, ObservedState};
use crate::persistence::entities::node;
use crate::service::ControlPlane;
use crate::service::agents::{ObservedReport, ServiceAssignment};
use crate::service::{Capability, NodeCapabilities};

/// How often a session looks for work queued through other replicas.
const DISPATCH_POLL: Duration = Duration::from_millis(500);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentApi {
    pub control_plane: ControlPlane,
    pub shutdown: CancellationToken,
}

impl AgentApi {
    async fn authenticated_node<T>(&self, request: &Request<T>) -> Result<node::Model, Status> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("a node client certificate is required"))?;
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("a node client certificate is required"))?;
        Ok(self.control_plane.authenticate_node(leaf.as_ref()).await?)
    }
}

pub fn spec_to_wire(assignment: &ServiceAssignment) -> apb::ServiceSpec {
    let s = &assignment.service;
    apb::ServiceSpec {
        id: s.id.clone(),
        name: s.name.clone(),
        display_name: s.display_name.clone(),
        r#type: s
            .service_type
            .parse::<crate::domain::ServiceType>()
            .map(|t| pb::ServiceType::from(t) as i32)
            .unwrap_or_default(),
        ports: assignment
            .ports
            .iter()
            .map(|p| pb::PortAssignment {
                purpose: p.purpose.clone(),
                port: p.port as u32,
            })
            .collect(),
        max_listeners: s.max_listeners as u32,
        max_bitrate_kbps: s.max_bitrate_kbps as u32,
        autodj: s.autodj,
        owner_customer_id: s.customer_id.clone(),
        source_password: s.source_password.clone(),
        admin_password: s.admin_password.clone(),
        relay_password: s.relay_password.clone(),
        public_host: assignment.public_host.clone(),
        bind_address: assignment.bind_address.clone(),
        desired_running: s.desired_state == DesiredState::Running.as_str(),
        generation: s.generation as u64,
    }
}

fn capabilities_from_wire(capabilities: &[pb::PluginCapability]) -> NodeCapabilities {
    NodeCapabilities(
        capabilities
            .iter()
            .filter_map(|c| {
                let service_type = crate::domain::service_type_from_wire(c.r#type)?;
                Some(Capability {
                    service_type: service_type.as_str().to_owned(),
                    available: c.available,
                    version: c.version.clone(),
                    detail: c.detail.clone(),
                    autodj_available: c.autodj_available,
                })
            })
            .collect(),
    )
}

fn observed_from_wire(services: Vec<apb::ObservedService>) -> Vec<ObservedReport> {
    services
        .into_iter()
        .map(|s| {
            let status = s.status.unwrap_or_default();
            ObservedReport {
                service_id: s.media_service_id,
                state: ObservedState::from(
                    pb::ObservedState::try_from(status.state).unwrap_or(pb::ObservedState::Unknown),
                ),
                message: status.message,
                stats_json: stats_to_json(&status.stats.unwrap_or_default()),
                observe_time: status
                    .observe_time
                    .map(|t| t.seconds * 1000 + (t.nanos / 1_000_000) as i64)
                    .unwrap_or_else(now_millis),
            }
        })
        .collect()
}

fn control(body: apb::control_message::Body) -> Result<apb::ControlMessage, Status> {
    Ok(apb::ControlMessage { body: Some(body) })
}

/// One agent's stream: pushes desired state and actions, takes reports and results.
struct Session {
    control_plane: ControlPlane,
    node_id: String,
    session_id: String,
    outbound: mpsc::Sender<Result<apb::ControlMessage, Status>>,
    /// What the last DesiredState sent covered: (id, generation) per service.
    sent_desired: Option<Vec<(String, i64)>>,
}

impl Session {
    async fn push_desired_state(&mut self) -> Result<bool, crate::error::ServiceError> {
        // Every tick reads only the fingerprint; the full specs are loaded when it changed.
        let fingerprint = self
            .control_plane
            .desired_fingerprint(&self.node_id)
            .await?;
        if self.sent_desired.as_ref() == Some(&fingerprint) {
            return Ok(true);
        }
        let assignments = self
            .control_plane
            .desired_assignments(&self.node_id)
            .await?;
        // The specs may be newer than the fingerprint; remember what was actually sent.
        let fingerprint: Vec<(String, i64)> = assignments
            .iter()
            .map(|a| (a.service.id.clone(), a.service.generation))
            .collect();
        let message = apb::DesiredState {
            services: assignments.iter().map(spec_to_wire).collect(),
        };
        let sent = self
            .outbound
            .send(control(apb::control_message::Body::DesiredState(message)))
            .await
            .is_ok();
        self.sent_desired = Some(fingerprint);
        Ok(sent)
    }

    async fn push_actions(&mut self) -> Result<bool, crate::error::ServiceError> {
        for (action, assignment) in self
            .control_plane
            .take_dispatches(&self.node_id, &self.session_id)
            .await?
        {
            let kind: ActionKind = action
                .kind
                .parse()
                .map_err(crate::error::ServiceError::Internal)?;
            let message = apb::ExecuteAction {
                action_id: action.id.clone(),
                kind: pb::ActionKind::from(kind) as i32,
                service: Some(spec_to_wire(&assignment)),
            };
            tracing::info!(action_id = %action.id, node_id = %self.node_id, kind = %kind, "dispatched action");
            if self
                .outbound
                .send(control(apb::control_message::Body::ExecuteAction(message)))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn handle(
        &mut self,
        message: apb::AgentMessage,
    ) -> Result<bool, crate::error::ServiceError> {
        match message.body {
            Some(apb::agent_message::Body::Heartbeat(_)) => {
                if !self
                    .control_plane
                    .heartbeat(&self.node_id, &self.session_id)
                    .await?
                {
                    tracing::info!(node_id = %self.node_id, "session superseded by a newer one");
                    return Ok(false);
                }
            }
            Some(apb::agent_message::Body::ActionUpdate(update)) => {
                let state = pb::ActionState::try_from(update.state)
                    .ok()
                    .and_then(|s| ActionState::try_from(s).ok())
                    .ok_or_else(|| {
                        crate::error::ServiceError::invalid_field(
                            "action_update.state",
                            "unknown state",
                        )
                    })?;
                self.control_plane
                    .record_action_update(&self.node_id, &update.action_id, state, &update.message)
                    .await?;
            }
            Some(apb::agent_message::Body::ServiceReport(report)) => {
                self.control_plane
                    .record_observed(&self.node_id, observed_from_wire(report.services))
                    .await?;
            }
            Some(apb::agent_message::Body::Hello(_)) | None => {}
        }
        Ok(true)
    }

    async fn run(mut self, mut inbound: Streaming<apb::AgentMessage>, shutdown: CancellationToken) {
        let mut changes = self.control_plane.subscribe_changes();
        let timeout = self.control_plane.config().heartbeat_timeout;
        let mut last_seen = Instant::now();
        let mut ticker = tokio::time::interval(DISPATCH_POLL);
        loop {
            let keep_going = tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        last_seen = Instant::now();
                        self.handle(message).await
                    }
                    Ok(None) => Ok(false),
                    Err(status) => {
                        tracing::info!(node_id = %self.node_id, error = %status.message(), "agent stream broke");
                        Ok(false)
                    }
                },
                _ = changes.changed() => self.sync().await,
                _ = ticker.tick() => {
                    if last_seen.elapsed() > timeout {
                        tracing::warn!(node_id = %self.node_id, "agent stopped heart-beating; closing its session");
                        Ok(false)
                    } else {
                        self.sync().await
                    }
                }
                _ = shutdown.cancelled() => Ok(false),
            };
            match keep_going {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => {
                    // Ending the session is the recovery: whatever was claimed or reported in
                    // the failed step is re-sent on the agent's next session (at-least-once),
                    // and the agent answers repeats from its log.
                    tracing::warn!(node_id = %self.node_id, error = %err, "agent session error; closing it so the agent reconnects");
                    break;
                }
            }
        }
        if let Err(err) = self
            .control_plane
            .close_session(&self.node_id, &self.session_id)
            .await
        {
            tracing::warn!(node_id = %self.node_id, error = %err, "could not record the session's end");
        }
        tracing::info!(node_id = %self.node_id, session_id = %self.session_id, "agent session closed");
    }

    async fn sync(&mut self) -> Result<bool, crate::error::ServiceError> {
        Ok(self.push_desired_state().await? && self.push_actions().await?)
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type SessionStream =
        Pin<Box<dyn Stream<Item = Result<apb::ControlMessage, Status>> + Send + 'static>>;

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
        let capabilities = capabilities_from_wire(&hello.capabilities);
        let session_id = self
            .control_plane
            .open_session(&node.id, &hello.agent_version, &capabilities)
            .await?;
        self.control_plane
            .record_observed(&node.id, observed_from_wire(hello.services))
            .await?;
        tracing::info!(node_id = %node.id, session_id = %session_id, agent_version = %hello.agent_version, "agent connected");
        let (outbound, rx) = mpsc::channel(64);
        let session = Session {
            control_plane: self.control_plane.clone(),
            node_id: node.id,
            session_id,
            outbound,
            sent_desired: None,
        };
        tokio::spawn(session.run(inbound, self.shutdown.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
