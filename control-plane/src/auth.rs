//! Bearer-token authentication for the public API, as a tower layer.
//!
//! Every call except health checking and reflection must carry `authorization: Bearer <token>`.
//! The token is hashed and looked up in the database on each call (no process-local cache), so
//! a token revoked through any replica stops working on all of them.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::domain::Principal;
use crate::service::ControlPlane;

/// Paths served without a token.
const PUBLIC_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

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
        if PUBLIC_PREFIXES
            .iter()
            .any(|p| request.uri().path().starts_with(p))
        {
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
                    "missing API token: send `authorization: Bearer <token>`",
                )
                .into_http());
            };
            match control_plane.authenticate(&token).await {
                Ok(Some(principal)) => {
                    request.extensions_mut().insert::<Principal>(principal);
                    inner.call(request).await
                }
                Ok(None) => Ok(tonic::Status::unauthenticated("invalid API token").into_http()),
                Err(err) => Ok(tonic::Status::from(err).into_http()),
            }
        })
    }
}
