//! `-o json`: the API's messages as JSON.
//!
//! Field names are the proto field names; enums are their proto names (`SERVICE_TYPE_ICECAST`);
//! timestamps are RFC 3339 strings; an absent message or timestamp is `null`; an unlimited
//! `Limit` is `{}` (its `max` is absent, as on the wire). Written out by hand because the
//! generated types carry no serde support, and so that every field is a deliberate choice.

use castplane_proto::v1 as pb;
use serde_json::{Value, json};

use crate::output::enum_json;

pub trait ToJson {
    fn to_json(&self) -> Value;
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ToJson::to_json).collect())
    }
}

impl ToJson for prost_types::Timestamp {
    fn to_json(&self) -> Value {
        Value::from(self.to_string())
    }
}

fn types_json(types: &[i32]) -> Value {
    types
        .iter()
        .map(|t| enum_json::<pb::ServiceType>(*t))
        .collect()
}

impl ToJson for pb::Limit {
    fn to_json(&self) -> Value {
        match self.max {
            Some(max) => json!({ "max": max }),
            None => json!({}),
        }
    }
}

impl ToJson for pb::ResellerLimits {
    fn to_json(&self) -> Value {
        json!({
            "customers": self.customers.to_json(),
            "services": self.services.to_json(),
            "listener_slots": self.listener_slots.to_json(),
            "max_bitrate_kbps": self.max_bitrate_kbps.to_json(),
            "disk_mb": self.disk_mb.to_json(),
            "bandwidth_gb_per_month": self.bandwidth_gb_per_month.to_json(),
        })
    }
}

impl ToJson for pb::Reseller {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "display_name": self.display_name,
            "limits": self.limits.to_json(),
            "allowed_service_types": types_json(&self.allowed_service_types),
            "default_service_type": enum_json::<pb::ServiceType>(self.default_service_type),
            "primary_customer_id": self.primary_customer_id,
            "create_time": self.create_time.to_json(),
            "update_time": self.update_time.to_json(),
        })
    }
}

impl ToJson for pb::Customer {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "reseller_id": self.reseller_id,
            "display_name": self.display_name,
            "email": self.email,
            "kind": enum_json::<pb::CustomerKind>(self.kind),
            "create_time": self.create_time.to_json(),
            "update_time": self.update_time.to_json(),
        })
    }
}

impl ToJson for pb::CustomerChoice {
    fn to_json(&self) -> Value {
        json!({
            "customer_id": self.customer_id,
            "display_name": self.display_name,
            "kind": enum_json::<pb::CustomerKind>(self.kind),
            "label": self.label,
        })
    }
}

impl ToJson for pb::Caller {
    fn to_json(&self) -> Value {
        json!({
            "principal_kind": enum_json::<pb::PrincipalKind>(self.principal_kind),
            "principal_id": self.principal_id,
            "display_name": self.display_name,
        })
    }
}

impl ToJson for pb::CreateApiTokenResponse {
    fn to_json(&self) -> Value {
        // The one place this secret is shown: the command exists to hand it over.
        json!({ "token_id": self.token_id, "secret": self.secret })
    }
}

impl ToJson for pb::ServiceTypeInfo {
    fn to_json(&self) -> Value {
        json!({
            "type": enum_json::<pb::ServiceType>(self.r#type),
            "kind": enum_json::<pb::ServiceKind>(self.kind),
            "display_name": self.display_name,
            "description": self.description,
            "requires": self.requires,
            "supports_autodj": self.supports_autodj,
            "ports_per_service": self.ports_per_service,
        })
    }
}

impl ToJson for pb::ProvisioningOptions {
    fn to_json(&self) -> Value {
        json!({
            "reseller_id": self.reseller_id,
            "allowed_service_types": self.allowed_service_types.to_json(),
            "default_service_type": enum_json::<pb::ServiceType>(self.default_service_type),
        })
    }
}

impl ToJson for pb::ResourceUsage {
    fn to_json(&self) -> Value {
        json!({
            "resource": enum_json::<pb::Resource>(self.resource),
            "used": self.used,
            "limit": self.limit.to_json(),
            "available": self.available,
        })
    }
}

impl ToJson for pb::ResellerUsage {
    fn to_json(&self) -> Value {
        json!({
            "reseller_id": self.reseller_id,
            "resources": self.resources.to_json(),
        })
    }
}

impl ToJson for pb::ServiceStats {
    fn to_json(&self) -> Value {
        json!({
            "listeners": self.listeners,
            "sources": self.sources,
            "mounts": self.mounts,
            "bytes_sent": self.bytes_sent,
            "bytes_read": self.bytes_read,
        })
    }
}

impl ToJson for pb::ServiceStatus {
    fn to_json(&self) -> Value {
        json!({
            "state": enum_json::<pb::ObservedState>(self.state),
            "message": self.message,
            "stats": self.stats.to_json(),
            "observe_time": self.observe_time.to_json(),
        })
    }
}

impl ToJson for pb::PortAssignment {
    fn to_json(&self) -> Value {
        json!({ "purpose": self.purpose, "port": self.port })
    }
}

impl ToJson for pb::MediaService {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "display_name": self.display_name,
            "customer_id": self.customer_id,
            "reseller_id": self.reseller_id,
            "type": enum_json::<pb::ServiceType>(self.r#type),
            "kind": enum_json::<pb::ServiceKind>(self.kind),
            "max_listeners": self.max_listeners,
            "max_bitrate_kbps": self.max_bitrate_kbps,
            "disk_quota_mb": self.disk_quota_mb,
            "bandwidth_gb_per_month": self.bandwidth_gb_per_month,
            "autodj": self.autodj,
            "node_id": self.node_id,
            "ports": self.ports.to_json(),
            "desired_state": enum_json::<pb::DesiredState>(self.desired_state),
            "status": self.status.to_json(),
            "create_time": self.create_time.to_json(),
            "update_time": self.update_time.to_json(),
            "deleting": self.deleting,
        })
    }
}

impl ToJson for pb::ConnectionInfo {
    fn to_json(&self) -> Value {
        json!({
            "media_service_id": self.media_service_id,
            "stream_url": self.stream_url,
            "source_host": self.source_host,
            "source_port": self.source_port,
            "mount": self.mount,
            "source_username": self.source_username,
            // `service connection` exists to hand this over.
            "source_password": self.source_password,
            "ingest_url": self.ingest_url,
        })
    }
}

impl ToJson for pb::OwnershipChange {
    fn to_json(&self) -> Value {
        json!({
            "media_service_id": self.media_service_id,
            "from_customer_id": self.from_customer_id,
            "to_customer_id": self.to_customer_id,
            "from_reseller_id": self.from_reseller_id,
            "to_reseller_id": self.to_reseller_id,
            "changed_by": self.changed_by,
            "change_time": self.change_time.to_json(),
        })
    }
}

impl ToJson for pb::ActionTransition {
    fn to_json(&self) -> Value {
        json!({
            "state": enum_json::<pb::ActionState>(self.state),
            "time": self.time.to_json(),
            "message": self.message,
        })
    }
}

impl ToJson for pb::Action {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "media_service_id": self.media_service_id,
            "kind": enum_json::<pb::ActionKind>(self.kind),
            "state": enum_json::<pb::ActionState>(self.state),
            "requested_by": self.requested_by,
            "error": self.error,
            "sequence": self.sequence,
            "create_time": self.create_time.to_json(),
            "update_time": self.update_time.to_json(),
            "deadline": self.deadline.to_json(),
            "transitions": self.transitions.to_json(),
            "node_id": self.node_id,
        })
    }
}

impl ToJson for pb::DeletionPlan {
    fn to_json(&self) -> Value {
        json!({
            "kept": self.kept,
            "destroyed": self.destroyed,
            "requires_confirmation": self.requires_confirmation,
        })
    }
}

impl ToJson for pb::DeleteMediaServiceResponse {
    fn to_json(&self) -> Value {
        json!({ "plan": self.plan.to_json(), "action": self.action.to_json() })
    }
}

impl ToJson for pb::PortRange {
    fn to_json(&self) -> Value {
        json!({ "first": self.first, "last": self.last })
    }
}

impl ToJson for pb::PluginCapability {
    fn to_json(&self) -> Value {
        json!({
            "type": enum_json::<pb::ServiceType>(self.r#type),
            "available": self.available,
            "version": self.version,
            "detail": self.detail,
            "autodj_available": self.autodj_available,
        })
    }
}

impl ToJson for pb::Node {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "public_host": self.public_host,
            "port_range": self.port_range.to_json(),
            "capacity": self.capacity,
            "status": enum_json::<pb::NodeStatus>(self.status),
            "capabilities": self.capabilities.to_json(),
            "service_count": self.service_count,
            "ports_used": self.ports_used,
            "agent_version": self.agent_version,
            "last_heartbeat_time": self.last_heartbeat_time.to_json(),
            "join_time": self.join_time.to_json(),
            "certificate_expire_time": self.certificate_expire_time.to_json(),
            "create_time": self.create_time.to_json(),
        })
    }
}

impl ToJson for pb::NodeJoinToken {
    fn to_json(&self) -> Value {
        // Shown by `node add` and `node token`, whose purpose is to hand it over.
        json!({ "token": self.token, "expire_time": self.expire_time.to_json() })
    }
}

impl ToJson for pb::CreateNodeResponse {
    fn to_json(&self) -> Value {
        json!({ "node": self.node.to_json(), "join_token": self.join_token.to_json() })
    }
}

/// A listing, all pages merged: `{"<key>": [...]}`.
pub fn list<T: ToJson>(key: &str, items: &[T]) -> Value {
    let mut map = serde_json::Map::new();
    map.insert(
        key.to_owned(),
        Value::Array(items.iter().map(ToJson::to_json).collect()),
    );
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_named_json() {
        let reseller = pb::Reseller {
            id: "rsl_1".into(),
            limits: Some(pb::ResellerLimits {
                customers: Some(pb::Limit { max: Some(3) }),
                services: Some(pb::Limit { max: None }),
                ..Default::default()
            }),
            allowed_service_types: vec![1, 3],
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        let v = reseller.to_json();
        assert_eq!(v["limits"]["customers"]["max"], 3);
        assert_eq!(v["limits"]["services"], json!({}));
        assert_eq!(v["limits"]["disk_mb"], Value::Null);
        assert_eq!(
            v["allowed_service_types"],
            json!(["SERVICE_TYPE_ICECAST", "SERVICE_TYPE_VIDEO"])
        );
        assert_eq!(v["default_service_type"], "SERVICE_TYPE_UNSPECIFIED");
        assert_eq!(v["create_time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["update_time"], Value::Null);
    }
}
