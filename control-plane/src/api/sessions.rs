//! `castplane.v1.SessionService` and `castplane.v1.LoginService`: console sign-in.

use castplane_proto::v1 as pb;
use castplane_proto::v1::login_service_server::LoginService;
use castplane_proto::v1::session_service_server::SessionService;
use tonic::{Request, Response, Status};

use super::convert::{caller_to_wire, check_email, principal_from_wire, principal_kind_to_wire};
use super::{credential, principal};
use crate::clock::to_timestamp;
use crate::error::Violations;
use crate::service::ControlPlane;
use crate::service::records;

/// Long enough to resist guessing on its own; short enough to type.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Bounds the work one request can ask of the password hash.
pub const MAX_PASSWORD_CHARS: usize = 256;

pub struct SessionApi {
    pub control_plane: ControlPlane,
}

pub struct LoginApi {
    pub control_plane: ControlPlane,
}

fn check_new_password(violations: &mut Violations, field: &str, password: &str) {
    let chars = password.chars().count();
    violations.check(
        (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars),
        field,
        format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
    );
}

fn login_to_wire(model: &records::Login) -> pb::Login {
    pb::Login {
        principal_kind: principal_kind_to_wire(&model.principal_kind) as i32,
        principal_id: model.principal_id.clone(),
        email: model.email.clone(),
        lock_expire_time: model
            .lock_expire_time
            .filter(|t| *t > crate::clock::now_millis())
            .map(to_timestamp),
        password_update_time: Some(to_timestamp(model.password_update_time)),
        create_time: Some(to_timestamp(model.create_time)),
    }
}

#[tonic::async_trait]
impl SessionService for SessionApi {
    #[tracing::instrument(skip_all)]
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        // Signing in needs no token, so no principal() to run the boundary checks for it.
        super::boundary::check(request.get_ref())?;
        let r = request.into_inner();
        let mut violations = Violations::default();
        violations.check(!r.email.trim().is_empty(), "email", "required");
        // No login has a malformed email; refusing it here also keeps NULs from the database.
        check_email(&mut violations, "email", r.email.trim());
        violations.check(!r.password.is_empty(), "password", "required");
        // A password too long to have been set cannot be right; refuse it before hashing.
        violations.check(
            r.password.chars().count() <= MAX_PASSWORD_CHARS,
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        );
        violations.into_result()?;
        let grant = self
            .control_plane
            .create_session(&r.email, r.password)
            .await?;
        Ok(Response::new(pb::CreateSessionResponse {
            token: grant.token,
            expire_time: Some(to_timestamp(grant.expire_time)),
            idle_timeout_seconds: grant.idle_timeout.as_secs().min(u32::MAX as u64) as u32,
            caller: Some(caller_to_wire(&grant.caller)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let credential = credential(&request)?;
        self.control_plane
            .delete_session(credential.session_id.as_deref())
            .await?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }
}

#[tonic::async_trait]
impl LoginService for LoginApi {
    #[tracing::instrument(skip_all)]
    async fn set_login(
        &self,
        request: Request<pb::SetLoginRequest>,
    ) -> Result<Response<pb::Login>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let target = principal_from_wire(r.principal_kind, &r.principal_id)?;
        let mut violations = Violations::default();
        violations.check(!r.email.trim().is_empty(), "email", "required");
        check_email(&mut violations, "email", r.email.trim());
        check_new_password(&mut violations, "password", &r.password);
        violations.into_result()?;
        let model = self
            .control_plane
            .set_login(&principal, target, &r.email, r.password)
            .await?;
        Ok(Response::new(login_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_login(
        &self,
        request: Request<pb::GetLoginRequest>,
    ) -> Result<Response<pb::Login>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let target = principal_from_wire(r.principal_kind, &r.principal_id)?;
        let model = self.control_plane.get_login(&principal, target).await?;
        Ok(Response::new(login_to_wire(&model)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_login(
        &self,
        request: Request<pb::DeleteLoginRequest>,
    ) -> Result<Response<pb::DeleteLoginResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.get_ref();
        let target = principal_from_wire(r.principal_kind, &r.principal_id)?;
        self.control_plane.delete_login(&principal, target).await?;
        Ok(Response::new(pb::DeleteLoginResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let credential = credential(&request)?;
        let r = request.into_inner();
        let mut violations = Violations::default();
        violations.check(
            !r.current_password.is_empty(),
            "current_password",
            "required",
        );
        check_new_password(&mut violations, "new_password", &r.new_password);
        violations.check(
            r.new_password != r.current_password,
            "new_password",
            "must differ from the current password",
        );
        violations.into_result()?;
        self.control_plane
            .change_password(&credential, r.current_password, r.new_password)
            .await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }
}
