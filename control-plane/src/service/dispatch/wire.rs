//! The agent protocol's messages, to and from what the dispatcher keeps. Everything an agent
//! sends is bounded here: strings are cut to size, lists capped, times range-checked.

use castplane_proto::agent::v1 as apb;
use castplane_proto::v1 as pb;

use crate::domain::{DesiredState, ObservedState, ServiceStats, service_type_from_wire};
use crate::persistence::dispatch::Observation;
use crate::persistence::entities::{media_service, media_track, port_allocation, video_file};
use crate::service::{Capability, NodeCapabilities};

/// Longest status message, version or detail string kept from an agent.
pub const MAX_TEXT: usize = 1024;
/// Most mounts kept in a service's statistics, and the longest mount name.
const MAX_MOUNTS: usize = 64;
const MAX_MOUNT: usize = 256;
/// At most this many capabilities per Hello (there are three service types).
const MAX_CAPABILITIES: usize = 16;
/// Observations dated further ahead than this are taken as "now": a node's clock may be off,
/// and a date far in the future would keep newer reports from replacing it.
const MAX_FUTURE_MS: i64 = 60_000;

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A service as its node should run it: the row, its ports and the node's public host.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub service: media_service::Model,
    pub ports: Vec<port_allocation::Model>,
    /// The owner's library, for an AutoDJ service.
    pub tracks: Vec<apb::MediaFile>,
    /// The service's video files, for a video service.
    pub videos: Vec<apb::MediaFile>,
}

impl Assignment {
    pub fn new(service: media_service::Model, ports: Vec<port_allocation::Model>) -> Self {
        Assignment {
            service,
            ports,
            tracks: Vec::new(),
            videos: Vec::new(),
        }
    }
}

pub fn track_to_wire(t: &media_track::Model) -> apb::MediaFile {
    apb::MediaFile {
        id: t.id.clone(),
        sha256: t.sha256.clone(),
        display_name: t.display_name.clone(),
        size_bytes: u64::try_from(t.size_bytes).unwrap_or_default(),
        file_name: crate::service::library::node_file_name(&t.id, &t.extension),
    }
}

pub fn video_to_wire(v: &video_file::Model) -> apb::MediaFile {
    apb::MediaFile {
        id: v.id.clone(),
        sha256: v.sha256.clone(),
        display_name: v.display_name.clone(),
        size_bytes: u64::try_from(v.size_bytes).unwrap_or_default(),
        file_name: crate::service::library::node_file_name(&v.id, &v.extension),
    }
}

/// Where the node's services are reached and where they listen.
#[derive(Clone, Debug, Default)]
pub struct NodeAddress {
    pub public_host: String,
    /// Empty: the agent binds what `public_host` resolves to on its host.
    pub bind_address: String,
}

pub fn spec_to_wire(assignment: &Assignment, node: &NodeAddress) -> apb::ServiceSpec {
    let s = &assignment.service;
    apb::ServiceSpec {
        id: s.id.clone(),
        name: s.name.clone(),
        display_name: s.display_name.clone(),
        r#type: pb::ServiceType::from(s.service_type) as i32,
        ports: assignment
            .ports
            .iter()
            .map(|p| pb::PortAssignment {
                purpose: p.purpose.clone(),
                port: u32::try_from(p.port).unwrap_or_default(),
            })
            .collect(),
        max_listeners: u32::try_from(s.max_listeners).unwrap_or(u32::MAX),
        max_bitrate_kbps: u32::try_from(s.max_bitrate_kbps).unwrap_or(u32::MAX),
        autodj: s.autodj,
        owner_customer_id: s.customer_id.clone(),
        source_password: s.source_password.clone(),
        admin_password: s.admin_password.clone(),
        relay_password: s.relay_password.clone(),
        public_host: node.public_host.clone(),
        bind_address: node.bind_address.clone(),
        desired_running: s.desired_state == DesiredState::Running,
        generation: u64::try_from(s.generation).unwrap_or_default(),
        media_tracks: assignment.tracks.clone(),
        video_files: assignment.videos.clone(),
    }
}

pub fn capabilities_from_wire(capabilities: &[pb::PluginCapability]) -> NodeCapabilities {
    NodeCapabilities(
        capabilities
            .iter()
            .take(MAX_CAPABILITIES)
            .filter_map(|c| {
                let service_type = service_type_from_wire(c.r#type)?;
                Some(Capability {
                    service_type,
                    available: c.available,
                    version: bounded(&c.version, MAX_TEXT),
                    detail: bounded(&c.detail, MAX_TEXT),
                    autodj_available: c.autodj_available,
                })
            })
            .collect(),
    )
}

/// Milliseconds since the epoch of a wire timestamp, if it is a plausible one.
pub fn millis_of(t: &prost_types::Timestamp) -> Option<i64> {
    let seconds = t.seconds.checked_mul(1000)?;
    let nanos = i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000;
    seconds.checked_add(nanos).filter(|ms| *ms >= 0)
}

pub fn stats_from_wire(stats: &pb::ServiceStats) -> ServiceStats {
    ServiceStats {
        listeners: stats.listeners,
        sources: stats.sources,
        mounts: stats
            .mounts
            .iter()
            .take(MAX_MOUNTS)
            .map(|m| bounded(m, MAX_MOUNT))
            .collect(),
        bytes_sent: stats.bytes_sent,
        bytes_read: stats.bytes_read,
    }
}

/// An agent's report on one service, bounded and dated (`now` when the agent gave no usable
/// time).
pub fn observation_from_wire(
    node_id: &str,
    service: &apb::ObservedService,
    now: i64,
) -> Observation {
    let status = service.status.clone().unwrap_or_default();
    let state = pb::ObservedState::try_from(status.state)
        .map(ObservedState::from)
        .unwrap_or(ObservedState::Unknown);
    let observe_time = status
        .observe_time
        .as_ref()
        .and_then(millis_of)
        .filter(|t| *t <= now.saturating_add(MAX_FUTURE_MS))
        .unwrap_or(now);
    Observation {
        service_id: service.media_service_id.clone(),
        node_id: node_id.to_owned(),
        state,
        message: bounded(&status.message, MAX_TEXT),
        stats: stats_from_wire(&status.stats.unwrap_or_default()),
        generation: i64::try_from(service.generation).unwrap_or(i64::MAX),
        observe_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_agent_values_do_not_panic_or_pass_through() {
        let huge = prost_types::Timestamp {
            seconds: 1 << 62,
            nanos: 0,
        };
        assert_eq!(millis_of(&huge), None);
        let negative = prost_types::Timestamp {
            seconds: -5,
            nanos: 0,
        };
        assert_eq!(millis_of(&negative), None);
        let report = apb::ObservedService {
            media_service_id: "svc_1".into(),
            status: Some(pb::ServiceStatus {
                state: 999,
                message: "é".repeat(4000),
                stats: Some(pb::ServiceStats {
                    mounts: vec!["m".repeat(10_000); 1000],
                    ..Default::default()
                }),
                observe_time: Some(huge),
            }),
            generation: u64::MAX,
        };
        let observation = observation_from_wire("node_1", &report, 1_000);
        assert_eq!(observation.observe_time, 1_000);
        assert_eq!(observation.state, ObservedState::Unknown);
        assert!(observation.message.len() <= MAX_TEXT);
        assert!(observation.stats.mounts.len() <= MAX_MOUNTS);
        assert!(
            observation
                .stats
                .mounts
                .iter()
                .all(|m| m.len() <= MAX_MOUNT)
        );
        assert_eq!(observation.generation, i64::MAX);
    }
}
