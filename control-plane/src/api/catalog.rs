//! `castplane.v1.CatalogService`.

use castplane_proto::v1 as pb;
use castplane_proto::v1::catalog_service_server::CatalogService;
use tonic::{Request, Response, Status};

use super::convert::limit_to_wire;
use super::{optional, principal};
use crate::domain::{Resource, ServiceType};
use crate::service::ControlPlane;

pub struct CatalogApi {
    pub control_plane: ControlPlane,
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    #[tracing::instrument(skip_all)]
    async fn list_service_types(
        &self,
        request: Request<pb::ListServiceTypesRequest>,
    ) -> Result<Response<pb::ListServiceTypesResponse>, Status> {
        principal(&request)?;
        Ok(Response::new(pb::ListServiceTypesResponse {
            service_types: ServiceType::ALL.iter().map(|t| t.info()).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_provisioning_options(
        &self,
        request: Request<pb::GetProvisioningOptionsRequest>,
    ) -> Result<Response<pb::ProvisioningOptions>, Status> {
        let principal = principal(&request)?;
        let options = self
            .control_plane
            .provisioning_options(&principal, optional(&request.get_ref().reseller_id))
            .await?;
        Ok(Response::new(pb::ProvisioningOptions {
            reseller_id: options.reseller_id,
            allowed_service_types: options.allowed_types.iter().map(|t| t.info()).collect(),
            default_service_type: options
                .default_type
                .map(|t| pb::ServiceType::from(t) as i32)
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_reseller_usage(
        &self,
        request: Request<pb::GetResellerUsageRequest>,
    ) -> Result<Response<pb::ResellerUsage>, Status> {
        let principal = principal(&request)?;
        let (reseller_id, limits, usage) = self
            .control_plane
            .reseller_usage(&principal, optional(&request.get_ref().reseller_id))
            .await?;
        let resources = Resource::ALL
            .iter()
            .map(|r| pb::ResourceUsage {
                resource: pb::Resource::from(*r) as i32,
                used: usage.get(*r),
                limit: limit_to_wire(limits.get(*r)),
                available: usage.available(&limits, *r),
            })
            .collect();
        Ok(Response::new(pb::ResellerUsage {
            reseller_id,
            resources,
        }))
    }
}
