//! Thin gRPC handlers: convert the request, call one service-layer method, convert the result.

pub mod accounts;
pub mod actions;
pub mod agent;
pub mod boundary;
pub mod catalog;
mod convert;
pub mod library;
pub mod media;
pub mod nodes;
pub mod sessions;

use tonic::{Request, Status};

use crate::domain::Principal;
use crate::service::Credential;

/// The caller, as the auth layer established it, of a request that passed the boundary
/// checks ([`boundary::check`]). Every public handler starts here, so no request reaches the
/// service layer unchecked.
pub(crate) fn principal<T: prost::Message + prost::Name>(
    request: &Request<T>,
) -> Result<Principal, Status> {
    let principal = request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing API token"))?;
    boundary::check(request.get_ref())?;
    Ok(principal)
}

/// The W3C trace context the caller sent (`traceparent` metadata), if any.
pub(crate) fn traceparent<T>(request: &Request<T>) -> &str {
    request
        .metadata()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The caller's credential: its principal and, for a console session, the session; like
/// [`principal`], only for a request that passed the boundary checks.
pub(crate) fn credential<T: prost::Message + prost::Name>(
    request: &Request<T>,
) -> Result<Credential, Status> {
    let credential = request
        .extensions()
        .get::<Credential>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing API token"))?;
    boundary::check(request.get_ref())?;
    Ok(credential)
}

/// An optional id field: empty means absent.
pub(crate) fn optional(value: &str) -> Option<&str> {
    if value.is_empty() { None } else { Some(value) }
}

/// A required id field.
pub(crate) fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(crate::error::ServiceError::invalid_field(field, "required").into())
    } else {
        Ok(value)
    }
}
