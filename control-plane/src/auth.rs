//! Bearer-token authentication for the public API, as a tower layer.
//!
//! Every castplane call except signing in must carry `authorization: Bearer <token>`: an API
//! token (programs) or a console session token (people). Session tokens are hashed and looked
//! up in the database on every call, so a sign-out or expiry on any replica holds on all of
//! them at once. Health checking, reflection and the console's static assets need no token;
//! the browsers' uploads (`uploads.rs`, plain HTTP beside the RPCs) need one like any RPC.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::domain::Principal;
use crate::service::{ControlPlane, Credential, SESSION_TOKEN_PREFIX};

/// Paths of castplane's own services: all of them need a token, except signing in.
const CASTPLANE_PREFIX: &str = "/castplane.";
const SIGN_IN: &str = "/castplane.v1.SessionService/CreateSession";

fn needs_token(path: &str) -> bool {
    (path.starts_with(CASTPLANE_PREFIX) && path != SIGN_IN) || crate::uploads::is_upload_path(path)
}

#[derive(Clone)]
pub struct AuthLayer {
    control_plane: ControlPlane,
}

impl AuthLayer {
    pub fn new(control_plane: ControlPlane) -> Self {
        AuthLayer { control_plane }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            control_plane: self.control_plane.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    control_plane: ControlPlane,
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is the one that was not polled ready; keep the ready one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !needs_token(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let control_plane = self.control_plane.clone();
        Box::pin(async move {
            let token = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                // The scheme is case-insensitive (RFC 9110 §11.1).
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            let Some(token) = token else {
                return Ok(tonic::Status::unauthenticated(
                    "missing token: send `authorization: Bearer <token>` (an API token or a console session)",
                )
                .into_http());
            };
            match control_plane.authenticate_bearer(&token).await {
                Ok(Some(credential)) => {
                    request
                        .extensions_mut()
                        .insert::<Principal>(credential.principal.clone());
                    request.extensions_mut().insert::<Credential>(credential);
                    inner.call(request).await
                }
                Ok(None) if token.starts_with(SESSION_TOKEN_PREFIX) => {
                    Ok(tonic::Status::unauthenticated(
                        "console session expired or ended: sign in again",
                    )
                    .into_http())
                }
                Ok(None) => Ok(tonic::Status::unauthenticated("invalid API token").into_http()),
                Err(err) => Ok(tonic::Status::from(err).into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::needs_token;

    #[test]
    fn only_castplane_calls_other_than_sign_in_need_a_token() {
        assert!(needs_token("/castplane.v1.AccountService/GetCaller"));
        assert!(needs_token("/castplane.v1.SessionService/DeleteSession"));
        assert!(!needs_token("/castplane.v1.SessionService/CreateSession"));
        assert!(!needs_token("/grpc.health.v1.Health/Check"));
        assert!(!needs_token(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!needs_token("/"));
        assert!(!needs_token("/assets/index-abc123.js"));
        assert!(needs_token("/uploads/v1/customers/cus_1/tracks"));
        assert!(needs_token("/uploads/anything"));
    }
}
