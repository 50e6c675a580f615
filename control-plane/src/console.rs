//! The browser console's built assets, served at `/` of the public API port beside the
//! gRPC-web API they call: one origin, no extra server, the same TLS.
//!
//! Hashed files under `/assets/` are cached for good; every other path answers `index.html`
//! (uncached), so the single-page app's own routes (`/services/svc_…`) survive a reload. Only
//! GET and HEAD reach the files; any other method, and any gRPC request to a path no service
//! claims, answers gRPC UNIMPLEMENTED as before.

use std::convert::Infallible;
use std::path::Path;

use axum::body::Body;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_http::services::{ServeDir, ServeFile};

/// Scripts, styles and API calls from this origin only. Players fetch streams and HLS
/// segments from the streaming nodes, which are other origins (and hls.js runs a blob worker).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src * blob:; connect-src 'self' http: https:; \
     worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

const ASSETS_PREFIX: &str = "/assets/";

/// The service answering everything the gRPC routes do not: the console's files.
pub fn assets_service(
    dir: &Path,
) -> BoxCloneSyncService<Request<Body>, Response<Body>, Infallible> {
    let hashed = ServeDir::new(dir);
    let pages = ServeDir::new(dir).fallback(ServeFile::new(dir.join("index.html")));
    BoxCloneSyncService::new(tower::service_fn(move |request: Request<Body>| {
        let hashed = hashed.clone();
        let pages = pages.clone();
        async move {
            let is_grpc = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            if is_grpc || !matches!(*request.method(), Method::GET | Method::HEAD) {
                return Ok(tonic::Status::unimplemented("").into_http::<Body>());
            }
            let immutable = request.uri().path().starts_with(ASSETS_PREFIX);
            let response = if immutable {
                hashed.oneshot(request).await
            } else {
                pages.oneshot(request).await
            };
            let mut response = match response {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            };
            let cache = if immutable && response.status().is_success() {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            for (name, value) in [
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (
                    HeaderName::from_static("cross-origin-opener-policy"),
                    "same-origin",
                ),
            ] {
                headers.insert(name, HeaderValue::from_static(value));
            }
            Ok(response)
        }
    }))
}

/// gRPC-web for the requests that are gRPC-web; every other request reaches the routes as it
/// came, on HTTP/1.1 as on HTTP/2. `tonic_web::GrpcWebLayer` alone answers any other HTTP/1.1
/// request 400 — which is every request a browser makes for the console's files and uploads
/// on a plain-HTTP port (browsers speak HTTP/2 only over TLS).
#[derive(Clone, Copy, Debug, Default)]
pub struct BrowserLayer;

impl<S: Clone> tower::Layer<S> for BrowserLayer {
    type Service = Browser<S>;

    fn layer(&self, inner: S) -> Browser<S> {
        Browser {
            grpc_web: tonic_web::GrpcWebLayer::new().layer(inner.clone()),
            plain: inner,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Browser<S> {
    grpc_web: tonic_web::GrpcWebService<S>,
    plain: S,
}

/// The content types tonic-web translates (`application/grpc-web`, `…+proto`, `…-text`, …).
fn is_grpc_web(request: &Request<impl Sized>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc-web"))
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Browser<S>
where
    S: tower::Service<Request<tonic::body::Body>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ReqBody::Error: Into<tower::BoxError> + std::fmt::Display,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tower::BoxError> + std::fmt::Display,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Each call waits for its own clone's readiness (`oneshot`).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if is_grpc_web(&request) {
            let grpc_web = self.grpc_web.clone();
            Box::pin(grpc_web.oneshot(request))
        } else {
            let plain = self.plain.clone();
            Box::pin(async move {
                let response = plain.oneshot(request.map(tonic::body::Body::new)).await?;
                Ok(response.map(tonic::body::Body::new))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(dir: &Path, method: Method, path: &str, grpc: bool) -> Response<Body> {
        let mut request = Request::builder().method(method).uri(path);
        if grpc {
            request = request.header(header::CONTENT_TYPE, "application/grpc");
        }
        assets_service(dir)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn pages_answer_the_app_assets_are_immutable_and_the_rest_is_unimplemented() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>app").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app-1234.js"), "console.log(1)").unwrap();

        for path in ["/", "/services/svc_123", "/customers/new"] {
            let response = get(dir.path(), Method::GET, path, false).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
            assert!(
                response.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("script-src 'self'")
            );
            assert_eq!(response.headers()[header::X_FRAME_OPTIONS], "DENY");
        }
        let asset = get(dir.path(), Method::GET, "/assets/app-1234.js", false).await;
        assert_eq!(asset.status(), 200);
        assert!(
            asset.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let missing = get(dir.path(), Method::GET, "/assets/gone.js", false).await;
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()[header::CACHE_CONTROL], "no-cache");
        let escape = get(dir.path(), Method::GET, "/assets/../../etc/passwd", false).await;
        assert_ne!(escape.status(), 200);

        for (method, grpc) in [(Method::POST, false), (Method::GET, true)] {
            let response = get(dir.path(), method, "/castplane.v9.Nothing/Call", grpc).await;
            assert_eq!(response.headers()["grpc-status"], "12", "UNIMPLEMENTED");
        }
    }
}
