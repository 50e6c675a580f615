//! One node's session on this replica: sends what the node must run (whole once, then only
//! what changed) and the actions claimed for it, and hands the agent's reports to the group
//! commit. It reads the database only when woken for its node, and once a safety-poll period.

use std::collections::BTreeMap;
use std::pin::Pin;

use castplane_proto::agent::v1 as apb;
use castplane_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Assignment};
use super::writer::Write;
use super::{ACTIONS_QUEUED, Attached, Hello, SPECS_CHANGED, SessionEvent};
use crate::clock::{now_millis, to_timestamp};
use crate::domain::{ActionState, ServiceType};
use crate::error::ServiceError;
use crate::ids;
use crate::persistence::dispatch as db;
use crate::persistence::entities::{action, media_service, port_allocation};
use crate::service::{ControlPlane, Result, group_by_parent};

pub(crate) type OutboundStream =
    Pin<Box<dyn Stream<Item = Result<apb::ControlMessage, tonic::Status>> + Send + 'static>>;

type Outbound = mpsc::UnboundedSender<Result<apb::ControlMessage, tonic::Status>>;

/// Most services a node may report on in one message; more is refused as abuse.
const MAX_REPORTED: usize = 100_000;

fn control(body: apb::control_message::Body) -> Result<apb::ControlMessage, tonic::Status> {
    Ok(apb::ControlMessage { body: Some(body) })
}

impl ControlPlane {
    /// Takes `node_id` over for a new session with the agent that sent `hello`, and returns
    /// what to stream back to it. Earlier sessions, on any replica, are fenced off.
    pub async fn attach_session<S>(
        &self,
        node_id: &str,
        hello: Hello,
        inbound: S,
    ) -> Result<OutboundStream>
    where
        S: Stream<Item = Result<apb::AgentMessage, tonic::Status>> + Send + Unpin + 'static,
    {
        let dispatcher = self.dispatcher();
        let capabilities = wire::capabilities_from_wire(&hello.capabilities);
        let capable: Vec<(ServiceType, bool)> = capabilities
            .0
            .iter()
            .filter(|c| c.available)
            .map(|c| (c.service_type, c.autodj_available))
            .collect();
        let session_id = ids::new_id("ses");
        let turn = dispatcher.opening_turn().await;
        let txn = self.begin().await?;
        let opened = db::open_session(
            &txn,
            node_id,
            &session_id,
            dispatcher.replica_id(),
            &wire::bounded(&hello.agent_version, wire::MAX_TEXT),
            &capabilities,
            &capable,
            dispatcher.config().not_after_ms(),
        )
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("node {node_id:?} not found")))?;
        txn.commit().await?;
        drop(turn);
        let generation = opened.node.session_generation;
        tracing::info!(node_id, session_id = %session_id, generation, agent_version = %opened.node.agent_version, "agent connected");

        let attached = dispatcher.attach(node_id, generation);
        dispatcher.metrics().agent_sessions.inc();
        let (outbound, rx) = mpsc::unbounded_channel();
        let session = Session {
            control_plane: self.clone(),
            node_id: node_id.to_owned(),
            generation,
            outbound,
            version: 0,
            node_address: wire::NodeAddress {
                public_host: opened.node.public_host.clone(),
                bind_address: opened.node.bind_address.clone(),
            },
            specs: BTreeMap::new(),
        };
        let shutdown = self.shutdown_token().clone();
        dispatcher.tracker.spawn(session.run(
            hello.services,
            opened.resend,
            inbound,
            attached,
            shutdown,
        ));
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }
}

struct Session {
    control_plane: ControlPlane,
    node_id: String,
    generation: i64,
    outbound: Outbound,
    /// The node version `specs` is current to.
    version: i64,
    node_address: wire::NodeAddress,
    /// Every live service of the node, as last sent.
    specs: BTreeMap<String, Assignment>,
}

/// Why a session ended.
enum End {
    AgentLeft,
    Silent,
    Replaced,
    Shutdown,
    Error(String),
}

impl Session {
    async fn run<S>(
        mut self,
        hello_services: Vec<apb::ObservedService>,
        resend: Vec<action::Model>,
        mut inbound: S,
        mut attached: Attached,
        shutdown: CancellationToken,
    ) where
        S: Stream<Item = Result<apb::AgentMessage, tonic::Status>> + Send + Unpin + 'static,
    {
        let end = match self.start(hello_services, resend).await {
            Ok(()) => self.serve(&mut inbound, &mut attached, &shutdown).await,
            Err(err) => End::Error(err.to_string()),
        };
        let dispatcher = self.control_plane.dispatcher();
        dispatcher.detach(&self.node_id, self.generation);
        dispatcher.metrics().agent_sessions.dec();
        match &end {
            End::AgentLeft => tracing::info!(node_id = %self.node_id, "agent disconnected"),
            End::Silent => {
                tracing::warn!(node_id = %self.node_id, "agent stopped heart-beating; closing its session")
            }
            End::Replaced => tracing::info!(node_id = %self.node_id, "session replaced"),
            End::Shutdown => {}
            End::Error(reason) => {
                tracing::warn!(node_id = %self.node_id, error = %reason, "agent session error; closing it so the agent reconnects")
            }
        }
        if matches!(end, End::Error(_)) {
            let _ = self
                .outbound
                .send(Err(tonic::Status::unavailable("session closed; reconnect")));
        }
        // A replica that is going away gives up its lease instead: its nodes become
        // unreachable at once, and their agents reconnect elsewhere.
        if !matches!(end, End::Shutdown | End::Replaced)
            && let Err(err) = self.close().await
        {
            tracing::warn!(node_id = %self.node_id, error = %err, "could not record the session's end");
        }
    }

    async fn close(&self) -> Result<()> {
        let persistence = self.control_plane.persistence();
        let txn = persistence.begin().await?;
        let deadline = self.control_plane.dispatch_config().deadline_ms();
        db::close_session(&txn, &self.node_id, self.generation, deadline).await?;
        txn.commit().await?;
        Ok(())
    }

    fn send(&self, body: apb::control_message::Body) -> Result<()> {
        self.outbound
            .send(control(body))
            .map_err(|_| ServiceError::Unavailable("the agent's stream is closed".into()))
    }

    /// The whole desired state, the observations the agent brought, re-sends, and a claim.
    async fn start(
        &mut self,
        hello_services: Vec<apb::ObservedService>,
        resend: Vec<action::Model>,
    ) -> Result<()> {
        let loaded = db::node_services(self.control_plane.reader(), &self.node_id, None)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("node {:?} not found", self.node_id)))?;
        self.version = loaded.version;
        self.node_address = wire::NodeAddress {
            public_host: loaded.public_host,
            bind_address: loaded.bind_address,
        };
        self.specs = assignments(loaded.services, loaded.ports);
        {
            let mut all: Vec<&mut Assignment> = self.specs.values_mut().collect();
            attach_media(self.control_plane.reader(), &mut all).await?;
        }
        let config = self.control_plane.dispatch_config();
        // Often enough that two missed heartbeats still fit in the timeout.
        let interval = config
            .heartbeat_interval
            .min(config.heartbeat_timeout / 3)
            .max(std::time::Duration::from_secs(1));
        self.send(apb::control_message::Body::DesiredState(
            apb::DesiredState {
                services: self
                    .specs
                    .values()
                    .map(|a| wire::spec_to_wire(a, &self.node_address))
                    .collect(),
                heartbeat_interval_seconds: u32::try_from(interval.as_secs()).unwrap_or(u32::MAX),
            },
        ))?;
        self.observe(&hello_services).await?;
        for action in resend {
            tracing::info!(action_id = %action.id, node_id = %self.node_id, "re-sending unanswered action");
            self.execute(&action)?;
        }
        self.claim().await
    }

    async fn serve<S>(
        &mut self,
        inbound: &mut S,
        attached: &mut Attached,
        shutdown: &CancellationToken,
    ) -> End
    where
        S: Stream<Item = Result<apb::AgentMessage, tonic::Status>> + Send + Unpin + 'static,
    {
        let config = self.control_plane.dispatch_config().clone();
        let silent = tokio::time::sleep(config.heartbeat_timeout);
        tokio::pin!(silent);
        let mut poll =
            tokio::time::interval_at(Instant::now() + config.safety_poll, config.safety_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                message = inbound.next() => match message {
                    Some(Ok(message)) => {
                        silent.as_mut().reset(Instant::now() + config.heartbeat_timeout);
                        self.handle(message).await
                    }
                    Some(Err(status)) => {
                        tracing::info!(node_id = %self.node_id, error = %status.message(), "agent stream broke");
                        return End::AgentLeft;
                    }
                    None => return End::AgentLeft,
                },
                event = attached.events.recv() => match event {
                    Some(SessionEvent::Claimed { actions, services }) => self.claimed(actions, services).await,
                    Some(SessionEvent::Failed(reason)) => return End::Error(reason),
                    Some(SessionEvent::Replaced) => return End::Replaced,
                    None => return End::Replaced,
                },
                () = attached.wake.notify.notified() => {
                    let flags = attached.wake.take();
                    self.woken(flags).await
                }
                _ = poll.tick() => self.poll().await,
                () = &mut silent => return End::Silent,
                () = attached.cancel.cancelled() => return End::Replaced,
                () = shutdown.cancelled() => return End::Shutdown,
            };
            if let Err(err) = step {
                return End::Error(err.to_string());
            }
        }
    }

    async fn handle(&mut self, message: apb::AgentMessage) -> Result<()> {
        match message.body {
            Some(apb::agent_message::Body::Heartbeat(_)) | None => Ok(()),
            Some(apb::agent_message::Body::ActionUpdate(update)) => {
                let state = pb::ActionState::try_from(update.state)
                    .ok()
                    .and_then(|s| ActionState::try_from(s).ok())
                    .filter(|s| {
                        matches!(
                            s,
                            ActionState::Running | ActionState::Succeeded | ActionState::Failed
                        )
                    })
                    .ok_or_else(|| {
                        ServiceError::invalid_field(
                            "action_update.state",
                            "agents report running, succeeded or failed",
                        )
                    })?;
                if !crate::ids::looks_like_id(&update.action_id) {
                    tracing::warn!(node_id = %self.node_id, "agent reported an action id that cannot exist; ignored");
                    return Ok(());
                }
                self.write(Write::Result {
                    node_id: self.node_id.clone(),
                    generation: self.generation,
                    action_id: update.action_id,
                    state,
                    message: wire::bounded(&update.message, wire::MAX_TEXT),
                })
                .await
            }
            Some(apb::agent_message::Body::ServiceReport(report)) => {
                self.observe(&report.services).await
            }
            Some(apb::agent_message::Body::Hello(_)) => Err(ServiceError::invalid_field(
                "hello",
                "a session says Hello once, first",
            )),
        }
    }

    async fn write(&self, write: Write) -> Result<()> {
        if self.control_plane.dispatcher().write(write).await {
            Ok(())
        } else {
            Err(ServiceError::Unavailable(
                "the control plane is shutting down".into(),
            ))
        }
    }

    /// Reports on services this node runs are kept; anything else is ignored.
    async fn observe(&self, services: &[apb::ObservedService]) -> Result<()> {
        if services.len() > MAX_REPORTED {
            return Err(ServiceError::invalid_field(
                "service_report.services",
                format!("at most {MAX_REPORTED} services per report"),
            ));
        }
        let now = now_millis();
        for service in services {
            if !self.specs.contains_key(&service.media_service_id) {
                tracing::debug!(node_id = %self.node_id, media_service_id = %wire::bounded(&service.media_service_id, 64), "report for a service not on this node; ignored");
                continue;
            }
            self.write(Write::Observe {
                generation: self.generation,
                observation: wire::observation_from_wire(&self.node_id, service, now),
            })
            .await?;
        }
        Ok(())
    }

    async fn claim(&self) -> Result<()> {
        self.write(Write::Claim {
            node_id: self.node_id.clone(),
            generation: self.generation,
        })
        .await
    }

    async fn woken(&mut self, flags: u8) -> Result<()> {
        if flags & SPECS_CHANGED != 0 {
            self.sync_specs().await?;
        }
        if flags & ACTIONS_QUEUED != 0 {
            self.claim().await?;
        }
        Ok(())
    }

    async fn poll(&mut self) -> Result<()> {
        let Some((version, queued)) =
            db::node_poll(self.control_plane.reader(), &self.node_id).await?
        else {
            return Err(ServiceError::NotFound(format!(
                "node {:?} was deleted",
                self.node_id
            )));
        };
        if version != self.version {
            self.sync_specs().await?;
        }
        if queued {
            self.claim().await?;
        }
        Ok(())
    }

    /// Reads the services that changed since `version` and sends them.
    async fn sync_specs(&mut self) -> Result<()> {
        let Some(delta) = db::node_services(
            self.control_plane.reader(),
            &self.node_id,
            Some(self.version),
        )
        .await?
        else {
            return Err(ServiceError::NotFound(format!(
                "node {:?} was deleted",
                self.node_id
            )));
        };
        self.version = self.version.max(delta.version);
        self.node_address = wire::NodeAddress {
            public_host: delta.public_host,
            bind_address: delta.bind_address,
        };
        let mut ports = group_by_parent(delta.ports, |p| &p.media_service_id);
        let mut update = apb::DesiredStateUpdate::default();
        let mut changed = Vec::new();
        for service in delta.services {
            if service.delete_time.is_some() {
                if self.specs.remove(&service.id).is_some() {
                    update.removed_service_ids.push(service.id);
                }
                continue;
            }
            let ports = ports.remove(&service.id).unwrap_or_default();
            changed.push(Assignment::new(service, ports));
        }
        {
            let mut refs: Vec<&mut Assignment> = changed.iter_mut().collect();
            attach_media(self.control_plane.reader(), &mut refs).await?;
        }
        for assignment in changed {
            update
                .services
                .push(wire::spec_to_wire(&assignment, &self.node_address));
            self.specs.insert(assignment.service.id.clone(), assignment);
        }
        if update.services.is_empty() && update.removed_service_ids.is_empty() {
            return Ok(());
        }
        self.send(apb::control_message::Body::DesiredStateUpdate(update))
    }

    async fn claimed(
        &mut self,
        actions: Vec<action::Model>,
        services: Vec<media_service::Model>,
    ) -> Result<()> {
        if actions
            .iter()
            .any(|a| !self.specs.contains_key(&a.media_service_id))
        {
            // Claimed for a service created after the last read: read it first.
            self.sync_specs().await?;
        }
        for service in services {
            if let Some(assignment) = self.specs.get_mut(&service.id) {
                assignment.service = service;
            }
        }
        let metrics = self.control_plane.dispatcher().metrics();
        for action in &actions {
            metrics.dispatched(action);
            tracing::debug!(action_id = %action.id, node_id = %self.node_id, kind = %action.kind, "dispatching action");
            self.execute(action)?;
        }
        Ok(())
    }

    /// Sends the action to the agent, in a span of the trace the action was queued in (on
    /// whichever replica, however long ago); the agent's execution continues this span.
    fn execute(&self, action: &action::Model) -> Result<()> {
        let span = tracing::info_span!(
            "dispatch action",
            otel.kind = "producer",
            action_id = %action.id,
            kind = %action.kind,
            media_service_id = %action.media_service_id,
            node_id = %self.node_id,
            session_generation = self.generation,
        );
        castplane_telemetry::set_parent(&span, &action.trace_context);
        let _entered = span.enter();
        let Some(assignment) = self.specs.get(&action.media_service_id) else {
            tracing::warn!(action_id = %action.id, media_service_id = %action.media_service_id, "claimed action for a service the node does not have; it will fail at its deadline");
            return Ok(());
        };
        // Untraced here (no exporter) but traced by the caller: the agent continues theirs.
        let traceparent = match castplane_telemetry::traceparent(&span) {
            own if own.is_empty() => action.trace_context.clone(),
            own => own,
        };
        self.send(apb::control_message::Body::ExecuteAction(
            apb::ExecuteAction {
                action_id: action.id.clone(),
                kind: pb::ActionKind::from(action.kind) as i32,
                service: Some(wire::spec_to_wire(assignment, &self.node_address)),
                not_after: action.not_after.map(to_timestamp),
                traceparent,
            },
        ))
    }
}

fn assignments(
    services: Vec<media_service::Model>,
    ports: Vec<port_allocation::Model>,
) -> BTreeMap<String, Assignment> {
    let mut ports = group_by_parent(ports, |p| &p.media_service_id);
    services
        .into_iter()
        .map(|service| {
            let ports = ports.remove(&service.id).unwrap_or_default();
            (service.id.clone(), Assignment::new(service, ports))
        })
        .collect()
}

/// Lists in each assignment the uploaded files its node must hold (the owner's library for
/// AutoDJ, the video files of a video service).
async fn attach_media(
    db: &impl crate::persistence::Executor,
    assignments: &mut [&mut Assignment],
) -> Result<()> {
    let services: Vec<&media_service::Model> = assignments.iter().map(|a| &a.service).collect();
    let mut media = crate::service::library::media_of_services(db, &services).await?;
    for assignment in assignments.iter_mut() {
        if let Some((tracks, videos)) = media.remove(&assignment.service.id) {
            assignment.tracks = tracks.iter().map(wire::track_to_wire).collect();
            assignment.videos = videos.iter().map(wire::video_to_wire).collect();
        }
    }
    Ok(())
}
