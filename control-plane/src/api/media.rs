//! `castplane.v1.MediaServiceService`.

use castplane_proto::v1 as pb;
use castplane_proto::v1::media_service_service_server::MediaServiceService;
use tonic::{Request, Response, Status};

use super::convert::{
    action_to_wire, check_display_name, check_service_name, deletion_plan_to_wire, mask_paths,
    media_service_to_wire, ownership_change_to_wire,
};
use super::{optional, principal, required, traceparent};
use crate::domain::{
    ActionKind, MAX_BANDWIDTH_GB, MAX_BITRATE_KBPS, MAX_DISK_MB, MAX_LISTENERS,
    service_type_from_wire,
};
use crate::error::{ServiceError, Violations};
use crate::persistence::services::ServiceFilter;
use crate::service::{ControlPlane, MediaServicePatch, NewMediaService, ServiceScope};

pub struct MediaServiceApi {
    pub control_plane: ControlPlane,
}

impl TryFrom<pb::CreateMediaServiceRequest> for NewMediaService {
    type Error = ServiceError;

    fn try_from(request: pb::CreateMediaServiceRequest) -> Result<Self, Self::Error> {
        let s = request.media_service.unwrap_or_default();
        let mut violations = Violations::default();
        violations.check(
            !s.customer_id.is_empty(),
            "media_service.customer_id",
            "required",
        );
        let service_type = service_type_from_wire(s.r#type);
        violations.check(
            service_type.is_some(),
            "media_service.type",
            "required: ICECAST, SHOUTCAST or VIDEO",
        );
        check_service_name(&mut violations, "media_service.name", &s.name);
        if !s.display_name.is_empty() {
            check_display_name(
                &mut violations,
                "media_service.display_name",
                &s.display_name,
            );
        }
        check_listeners(&mut violations, s.max_listeners);
        check_bitrate(&mut violations, s.max_bitrate_kbps);
        check_disk(&mut violations, s.disk_quota_mb);
        check_bandwidth(&mut violations, s.bandwidth_gb_per_month);
        violations.into_result()?;
        Ok(NewMediaService {
            customer_id: s.customer_id,
            service_type: service_type
                .ok_or_else(|| ServiceError::invalid_field("media_service.type", "required"))?,
            name: s.name,
            display_name: s.display_name.trim().to_owned(),
            max_listeners: s.max_listeners,
            max_bitrate_kbps: s.max_bitrate_kbps,
            disk_quota_mb: s.disk_quota_mb,
            bandwidth_gb_per_month: s.bandwidth_gb_per_month,
            autodj: s.autodj,
            node_id: optional(&s.node_id).map(str::to_owned),
            remember_type_as_default: request.remember_type_as_default,
        })
    }
}

fn check_listeners(violations: &mut Violations, value: u32) {
    violations.check(
        (1..=MAX_LISTENERS).contains(&value),
        "media_service.max_listeners",
        format!("must be between 1 and {MAX_LISTENERS}"),
    );
}

fn check_bitrate(violations: &mut Violations, value: u32) {
    violations.check(
        (8..=MAX_BITRATE_KBPS).contains(&value),
        "media_service.max_bitrate_kbps",
        format!("must be between 8 and {MAX_BITRATE_KBPS}"),
    );
}

fn check_disk(violations: &mut Violations, value: u64) {
    violations.check(
        value <= MAX_DISK_MB,
        "media_service.disk_quota_mb",
        format!("must be at most {MAX_DISK_MB}"),
    );
}

fn check_bandwidth(violations: &mut Violations, value: u64) {
    violations.check(
        value <= MAX_BANDWIDTH_GB,
        "media_service.bandwidth_gb_per_month",
        format!("must be at most {MAX_BANDWIDTH_GB}"),
    );
}

const UPDATE_PATHS: &[&str] = &[
    "display_name",
    "max_listeners",
    "max_bitrate_kbps",
    "disk_quota_mb",
    "bandwidth_gb_per_month",
    "autodj",
];

fn media_service_patch(
    request: pb::UpdateMediaServiceRequest,
) -> Result<(String, MediaServicePatch), ServiceError> {
    let paths = mask_paths(request.update_mask.as_ref(), UPDATE_PATHS)?;
    let s = request.media_service.unwrap_or_default();
    let mut violations = Violations::default();
    violations.check(!s.id.is_empty(), "media_service.id", "required");
    let mut patch = MediaServicePatch::default();
    for path in paths {
        match path.as_str() {
            "display_name" => {
                check_display_name(
                    &mut violations,
                    "media_service.display_name",
                    &s.display_name,
                );
                patch.display_name = Some(s.display_name.trim().to_owned());
            }
            "max_listeners" => {
                check_listeners(&mut violations, s.max_listeners);
                patch.max_listeners = Some(s.max_listeners);
            }
            "max_bitrate_kbps" => {
                check_bitrate(&mut violations, s.max_bitrate_kbps);
                patch.max_bitrate_kbps = Some(s.max_bitrate_kbps);
            }
            "disk_quota_mb" => {
                check_disk(&mut violations, s.disk_quota_mb);
                patch.disk_quota_mb = Some(s.disk_quota_mb);
            }
            "bandwidth_gb_per_month" => {
                check_bandwidth(&mut violations, s.bandwidth_gb_per_month);
                patch.bandwidth_gb_per_month = Some(s.bandwidth_gb_per_month);
            }
            _ => patch.autodj = Some(s.autodj),
        }
    }
    violations.into_result()?;
    Ok((s.id, patch))
}

fn scope_from_wire(value: i32) -> Result<ServiceScope, ServiceError> {
    match pb::ServiceScope::try_from(value) {
        Ok(pb::ServiceScope::Unspecified | pb::ServiceScope::All) => Ok(ServiceScope::All),
        Ok(pb::ServiceScope::MyServices) => Ok(ServiceScope::MyServices),
        Ok(pb::ServiceScope::CustomerServices) => Ok(ServiceScope::CustomerServices),
        Err(_) => Err(ServiceError::invalid_field(
            "scope",
            format!("{value} is not a scope"),
        )),
    }
}

impl MediaServiceApi {
    /// Start, stop and restart differ only in the kind of action they queue.
    #[tracing::instrument(skip_all)]
    async fn enqueue<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        id: &str,
        kind: ActionKind,
    ) -> Result<Response<pb::Action>, Status> {
        let principal = principal(request)?;
        let id = required("id", id)?;
        let record = self
            .control_plane
            .enqueue_action(&principal, id, kind, traceparent(request))
            .await?;
        Ok(Response::new(action_to_wire(&record)))
    }
}

#[tonic::async_trait]
impl MediaServiceService for MediaServiceApi {
    #[tracing::instrument(skip_all)]
    async fn create_media_service(
        &self,
        request: Request<pb::CreateMediaServiceRequest>,
    ) -> Result<Response<pb::MediaService>, Status> {
        let principal = principal(&request)?;
        let new = NewMediaService::try_from(request.into_inner())?;
        let view = self
            .control_plane
            .create_media_service(&principal, new)
            .await?;
        Ok(Response::new(media_service_to_wire(&view)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_media_service(
        &self,
        request: Request<pb::GetMediaServiceRequest>,
    ) -> Result<Response<pb::MediaService>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let view = self.control_plane.get_media_service(&principal, id).await?;
        Ok(Response::new(media_service_to_wire(&view)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_media_services(
        &self,
        request: Request<pb::ListMediaServicesRequest>,
    ) -> Result<Response<pb::ListMediaServicesResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let scope = scope_from_wire(r.scope)?;
        let filter = ServiceFilter {
            reseller_id: optional(&r.reseller_id).map(str::to_owned),
            customer_id: optional(&r.customer_id).map(str::to_owned),
            node_id: optional(&r.node_id).map(str::to_owned),
            primary_accounts: None,
            name_contains: optional(r.query.trim()).map(str::to_owned),
            show_deleted: r.show_deleted,
        };
        let (views, next_page_token) = self
            .control_plane
            .list_media_services(&principal, scope, filter, &r.page_token, r.page_size)
            .await?;
        Ok(Response::new(pb::ListMediaServicesResponse {
            media_services: views.iter().map(media_service_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_media_service(
        &self,
        request: Request<pb::UpdateMediaServiceRequest>,
    ) -> Result<Response<pb::MediaService>, Status> {
        let principal = principal(&request)?;
        let (id, patch) = media_service_patch(request.into_inner())?;
        let view = self
            .control_plane
            .update_media_service(&principal, &id, patch)
            .await?;
        Ok(Response::new(media_service_to_wire(&view)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_media_service_connection_info(
        &self,
        request: Request<pb::GetMediaServiceConnectionInfoRequest>,
    ) -> Result<Response<pb::ConnectionInfo>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let info = self.control_plane.connection_info(&principal, id).await?;
        Ok(Response::new(pb::ConnectionInfo {
            media_service_id: info.service_id,
            stream_url: info.stream_url,
            source_host: info.source_host,
            source_port: info.source_port,
            mount: info.mount,
            source_username: info.source_username,
            source_password: info.source_password,
            ingest_url: info.ingest_url,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn change_media_service_owner(
        &self,
        request: Request<pb::ChangeMediaServiceOwnerRequest>,
    ) -> Result<Response<pb::MediaService>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let id = required("id", &r.id)?;
        let new_customer_id = required("new_customer_id", &r.new_customer_id)?;
        let view = self
            .control_plane
            .change_owner(&principal, id, new_customer_id)
            .await?;
        Ok(Response::new(media_service_to_wire(&view)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_ownership_changes(
        &self,
        request: Request<pb::ListOwnershipChangesRequest>,
    ) -> Result<Response<pb::ListOwnershipChangesResponse>, Status> {
        let principal = principal(&request)?;
        let id = required("media_service_id", &request.get_ref().media_service_id)?;
        let changes = self
            .control_plane
            .list_ownership_changes(&principal, id)
            .await?;
        Ok(Response::new(pb::ListOwnershipChangesResponse {
            changes: changes.iter().map(ownership_change_to_wire).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn start_media_service(
        &self,
        request: Request<pb::StartMediaServiceRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        self.enqueue(&request, &request.get_ref().id, ActionKind::Start)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn stop_media_service(
        &self,
        request: Request<pb::StopMediaServiceRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        self.enqueue(&request, &request.get_ref().id, ActionKind::Stop)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn restart_media_service(
        &self,
        request: Request<pb::RestartMediaServiceRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        self.enqueue(&request, &request.get_ref().id, ActionKind::Restart)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_media_service(
        &self,
        request: Request<pb::DeleteMediaServiceRequest>,
    ) -> Result<Response<pb::DeleteMediaServiceResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let id = required("id", &r.id)?;
        let (plan, record) = self
            .control_plane
            .delete_media_service(
                &principal,
                id,
                r.confirm_permanent_deletion,
                r.validate_only,
                traceparent(&request),
            )
            .await?;
        Ok(Response::new(pb::DeleteMediaServiceResponse {
            plan: Some(deletion_plan_to_wire(&plan)),
            action: record.as_ref().map(action_to_wire),
        }))
    }
}
