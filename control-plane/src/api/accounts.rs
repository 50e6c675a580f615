//! `castplane.v1.AccountService`.

use castplane_proto::v1 as pb;
use castplane_proto::v1::account_service_server::AccountService;
use tonic::{Request, Response, Status};

use super::convert::{
    account_deletion_to_wire, api_token_to_wire, caller_to_wire, check_display_name, check_email,
    customer_choice, customer_to_wire, limits_from_wire, mask_paths, principal_from_wire,
    reseller_to_wire, resource_from_path, service_types_from_wire,
};
use super::{optional, principal, required, traceparent};
use crate::domain::{Resource, service_type_from_wire};
use crate::error::{ServiceError, Violations};
use crate::service::{
    ControlPlane, CustomerPatch, DeleteOptions, NewCustomer, NewReseller, ResellerPatch,
};

pub struct AccountApi {
    pub control_plane: ControlPlane,
}

impl TryFrom<pb::CreateResellerRequest> for NewReseller {
    type Error = ServiceError;

    fn try_from(request: pb::CreateResellerRequest) -> Result<Self, Self::Error> {
        let reseller = request.reseller.unwrap_or_default();
        let mut violations = Violations::default();
        check_display_name(
            &mut violations,
            "reseller.display_name",
            &reseller.display_name,
        );
        let allowed_types = service_types_from_wire(
            &mut violations,
            "reseller.allowed_service_types",
            &reseller.allowed_service_types,
        );
        let default_type = match reseller.default_service_type {
            0 => None,
            value => {
                let parsed = service_type_from_wire(value);
                violations.check(
                    parsed.is_some(),
                    "reseller.default_service_type",
                    format!("{value} is not a service type"),
                );
                parsed
            }
        };
        let limits = limits_from_wire(&mut violations, "reseller.limits", reseller.limits.as_ref());
        violations.into_result()?;
        Ok(NewReseller {
            display_name: reseller.display_name.trim().to_owned(),
            limits,
            allowed_types,
            default_type,
        })
    }
}

const RESELLER_PATHS: &[&str] = &[
    "display_name",
    "limits",
    "limits.customers",
    "limits.services",
    "limits.listener_slots",
    "limits.max_bitrate_kbps",
    "limits.disk_mb",
    "limits.bandwidth_gb_per_month",
    "allowed_service_types",
    "default_service_type",
];

fn reseller_patch(
    request: &pb::UpdateResellerRequest,
) -> Result<(String, ResellerPatch), ServiceError> {
    let reseller = request.reseller.clone().unwrap_or_default();
    let paths = mask_paths(request.update_mask.as_ref(), RESELLER_PATHS)?;
    let mut violations = Violations::default();
    if reseller.id.is_empty() {
        violations.add("reseller.id", "required");
    }
    let mut patch = ResellerPatch::default();
    // Limits the mask leaves alone are not checked either: they are not being set.
    let mut ignored = Violations::default();
    let limit_violations = if paths.iter().any(|p| p.starts_with("limits")) {
        &mut violations
    } else {
        &mut ignored
    };
    let limits = limits_from_wire(
        limit_violations,
        "reseller.limits",
        reseller.limits.as_ref(),
    );
    for path in &paths {
        match path.as_str() {
            "display_name" => {
                check_display_name(
                    &mut violations,
                    "reseller.display_name",
                    &reseller.display_name,
                );
                patch.display_name = Some(reseller.display_name.trim().to_owned());
            }
            "limits" => patch
                .limits
                .extend(Resource::ALL.iter().map(|r| (*r, limits.get(*r)))),
            "allowed_service_types" => {
                patch.allowed_types = Some(service_types_from_wire(
                    &mut violations,
                    "reseller.allowed_service_types",
                    &reseller.allowed_service_types,
                ));
            }
            "default_service_type" => {
                patch.default_type = Some(match reseller.default_service_type {
                    0 => None,
                    value => {
                        let parsed = service_type_from_wire(value);
                        violations.check(
                            parsed.is_some(),
                            "reseller.default_service_type",
                            format!("{value} is not a service type"),
                        );
                        parsed
                    }
                });
            }
            other => {
                if let Some(resource) = resource_from_path(other) {
                    patch.limits.push((resource, limits.get(resource)));
                }
            }
        }
    }
    violations.into_result()?;
    Ok((reseller.id, patch))
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    #[tracing::instrument(skip_all)]
    async fn create_reseller(
        &self,
        request: Request<pb::CreateResellerRequest>,
    ) -> Result<Response<pb::Reseller>, Status> {
        let principal = principal(&request)?;
        let new = NewReseller::try_from(request.into_inner())?;
        let model = self.control_plane.create_reseller(&principal, new).await?;
        Ok(Response::new(reseller_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_reseller(
        &self,
        request: Request<pb::GetResellerRequest>,
    ) -> Result<Response<pb::Reseller>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let model = self.control_plane.get_reseller(&principal, id).await?;
        Ok(Response::new(reseller_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_resellers(
        &self,
        request: Request<pb::ListResellersRequest>,
    ) -> Result<Response<pb::ListResellersResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let (rows, next_page_token) = self
            .control_plane
            .list_resellers(&principal, &r.page_token, r.page_size)
            .await?;
        Ok(Response::new(pb::ListResellersResponse {
            resellers: rows.iter().map(reseller_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_reseller(
        &self,
        request: Request<pb::UpdateResellerRequest>,
    ) -> Result<Response<pb::Reseller>, Status> {
        let principal = principal(&request)?;
        let (id, patch) = reseller_patch(request.get_ref())?;
        let model = self
            .control_plane
            .update_reseller(&principal, &id, patch)
            .await?;
        Ok(Response::new(reseller_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let principal = principal(&request)?;
        let customer = request.into_inner().customer.unwrap_or_default();
        let mut violations = Violations::default();
        check_display_name(
            &mut violations,
            "customer.display_name",
            &customer.display_name,
        );
        check_email(&mut violations, "customer.email", &customer.email);
        violations.into_result()?;
        let new = NewCustomer {
            reseller_id: optional(&customer.reseller_id).map(str::to_owned),
            display_name: customer.display_name.trim().to_owned(),
            email: customer.email,
        };
        let model = self.control_plane.create_customer(&principal, new).await?;
        Ok(Response::new(customer_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let model = self.control_plane.get_customer(&principal, id).await?;
        Ok(Response::new(customer_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let (rows, next_page_token) = self
            .control_plane
            .list_customers(
                &principal,
                optional(&r.reseller_id),
                &r.page_token,
                r.page_size,
            )
            .await?;
        Ok(Response::new(pb::ListCustomersResponse {
            customers: rows.iter().map(customer_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let paths = mask_paths(r.update_mask.as_ref(), &["display_name", "email"])?;
        let customer = r.customer.unwrap_or_default();
        let mut violations = Violations::default();
        violations.check(!customer.id.is_empty(), "customer.id", "required");
        let mut patch = CustomerPatch::default();
        for path in paths {
            if path == "display_name" {
                check_display_name(
                    &mut violations,
                    "customer.display_name",
                    &customer.display_name,
                );
                patch.display_name = Some(customer.display_name.trim().to_owned());
            } else {
                check_email(&mut violations, "customer.email", &customer.email);
                patch.email = Some(customer.email.clone());
            }
        }
        violations.into_result()?;
        let model = self
            .control_plane
            .update_customer(&principal, &customer.id, patch)
            .await?;
        Ok(Response::new(customer_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_customer_choices(
        &self,
        request: Request<pb::ListCustomerChoicesRequest>,
    ) -> Result<Response<pb::ListCustomerChoicesResponse>, Status> {
        let principal = principal(&request)?;
        let rows = self
            .control_plane
            .list_customer_choices(&principal, optional(&request.get_ref().reseller_id))
            .await?;
        Ok(Response::new(pb::ListCustomerChoicesResponse {
            choices: rows.iter().map(customer_choice).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let target = principal_from_wire(r.principal_kind, &r.principal_id)?;
        let (token_id, secret) = self
            .control_plane
            .create_api_token(&principal, target, r.description)
            .await?;
        Ok(Response::new(pb::CreateApiTokenResponse {
            token_id,
            secret,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_caller(
        &self,
        request: Request<pb::GetCallerRequest>,
    ) -> Result<Response<pb::Caller>, Status> {
        let principal = principal(&request)?;
        let view = self.control_plane.describe_caller(&principal).await?;
        Ok(Response::new(caller_to_wire(&view)))
    }

    async fn delete_reseller(
        &self,
        request: Request<pb::DeleteResellerRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let id = required("id", &r.id)?;
        let options = DeleteOptions {
            force: r.force,
            confirm_permanent_deletion: r.confirm_permanent_deletion,
            validate_only: r.validate_only,
        };
        let deletion = self
            .control_plane
            .delete_reseller(&principal, id, options, traceparent(&request))
            .await?;
        Ok(Response::new(account_deletion_to_wire(&deletion)))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let id = required("id", &r.id)?;
        let options = DeleteOptions {
            force: r.force,
            confirm_permanent_deletion: r.confirm_permanent_deletion,
            validate_only: r.validate_only,
        };
        let deletion = self
            .control_plane
            .delete_customer(&principal, id, options, traceparent(&request))
            .await?;
        Ok(Response::new(account_deletion_to_wire(&deletion)))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let target = match r.principal_kind {
            0 if r.principal_id.is_empty() => None,
            kind => Some(principal_from_wire(kind, &r.principal_id)?),
        };
        let (rows, next_page_token) = self
            .control_plane
            .list_api_tokens(&principal, target, &r.page_token, r.page_size)
            .await?;
        Ok(Response::new(pb::ListApiTokensResponse {
            api_tokens: rows.iter().map(api_token_to_wire).collect(),
            next_page_token,
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Result<Response<pb::RevokeApiTokenResponse>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        self.control_plane.revoke_api_token(&principal, id).await?;
        Ok(Response::new(pb::RevokeApiTokenResponse {}))
    }
}
