//! Uploads from browsers: a file as the plain body of one HTTP request.
//!
//! A browser cannot send a client stream over gRPC-web, so `UploadMediaTrack` and
//! `UploadVideoFile` are also served on the public listener (same port, same TLS, beside
//! gRPC, gRPC-web and the console's assets) as
//!
//! - `POST /uploads/v1/customers/{customer_id}/tracks?file_name=…&sha256=…`
//! - `POST /uploads/v1/services/{media_service_id}/videos?file_name=…&sha256=…`
//!
//! with `Content-Length` (the file's size: chunked bodies are refused, 411), the file's bytes
//! as the body and `Authorization: Bearer <token>`, checked by the same auth layer as every
//! RPC (`auth.rs`). The body is handed, as it arrives, to the same service-layer calls as the
//! gRPC uploads (`service/library.rs`): the same boundary checks, quota, checksum, ffprobe
//! and "nothing kept" rules, memory bounded by one body frame. `sha256` is required, as it is
//! over gRPC — the service layer verifies every upload against it — so the console hashes
//! the file in the browser first, slice by slice.
//!
//! Success is `201 Created` with the stored `MediaTrack` / `VideoFile` in protobuf-JSON. A
//! refusal is `{"code": "RESOURCE_EXHAUSTED", "message": "…", "details": [...]}`: the gRPC
//! code's name, the same message as over gRPC, and its `google.rpc` details in protobuf-JSON
//! (each with its `@type`: `BadRequest`, `QuotaFailure`, `ErrorInfo` with `asked` and
//! `available` …), under the HTTP status `google/rpc/code.proto` maps the code to (429, 404,
//! 400 …). Field violations name the gRPC header's fields: `file.file_name` is the
//! `file_name` parameter, `file.sha256` the `sha256` one, `file.size_bytes` the
//! `Content-Length`. Refusals of the layers in front (a missing token, the concurrency limit)
//! are rewritten into the same shape by [`http_errors_layer`], so a client reads one format.
//!
//! Uploads are answered on HTTP/1.1 (a browser on a plain-HTTP port) and HTTP/2 (what browsers
//! and curl negotiate on TLS; see `console::BrowserLayer`). HTTP/2 also lets the server refuse
//! an upload early (over the quota) while the client is still sending, and the client still
//! read the answer; on HTTP/1.1 the refusal closes the connection once it is sent.
//!
//! CSRF: the credential is the `Authorization` header, never a cookie, so a page of another
//! origin cannot make the browser send it (a form cannot set headers; a cross-origin request
//! with one needs a CORS preflight, which this server does not grant).

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request};
use bytes::Bytes;
use castplane_proto::v1 as pb;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::Code;
use tower::Service;

use crate::api::boundary;
use crate::api::library::{track_to_wire, upload_of, video_to_wire};
use crate::blobs::BLOB_CHUNK_BYTES;
use crate::domain::Principal;
use crate::error::{ServiceError, Violations};
use crate::limits::{Middleware, MiddlewareLayer};
use crate::service::ControlPlane;

/// Every path of this module starts so; the auth layer requires a token for all of them.
pub const UPLOADS_PREFIX: &str = "/uploads/";
const TRACKS: &str = "/uploads/v1/customers/{customer_id}/tracks";
const VIDEOS: &str = "/uploads/v1/services/{media_service_id}/videos";

pub fn is_upload_path(path: &str) -> bool {
    path.starts_with(UPLOADS_PREFIX)
}

/// The two upload routes, for the public listener's router.
pub fn routes(control_plane: ControlPlane) -> axum::Router {
    let tracks = control_plane.clone();
    let videos = control_plane;
    axum::Router::new()
        .route(
            TRACKS,
            axum::routing::post(move |id, request| upload_track(tracks.clone(), id, request)),
        )
        .route(
            VIDEOS,
            axum::routing::post(move |id, request| upload_video(videos.clone(), id, request)),
        )
}

async fn upload_track(
    control_plane: ControlPlane,
    customer_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> http::Response<Body> {
    let result = async {
        let Ok(Path(customer_id)) = customer_id else {
            return Err(bad_path("customer_id"));
        };
        let (principal, file, body) = accept(request)?;
        let header = pb::UploadMediaTrackHeader {
            customer_id,
            file: Some(file),
        };
        boundary::check(&header)?;
        let track = control_plane
            .upload_media_track(
                &principal,
                &header.customer_id,
                upload_of(header.file),
                chunks(body),
            )
            .await?;
        Ok(json(
            StatusCode::CREATED,
            message_json(&track_to_wire(&track)),
        ))
    };
    result
        .await
        .unwrap_or_else(|refusal: Refusal| refusal.into_response())
}

async fn upload_video(
    control_plane: ControlPlane,
    service_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> http::Response<Body> {
    let result = async {
        let Ok(Path(media_service_id)) = service_id else {
            return Err(bad_path("media_service_id"));
        };
        let (principal, file, body) = accept(request)?;
        let header = pb::UploadVideoFileHeader {
            media_service_id,
            file: Some(file),
        };
        boundary::check(&header)?;
        let video = control_plane
            .upload_video_file(
                &principal,
                &header.media_service_id,
                upload_of(header.file),
                chunks(body),
            )
            .await?;
        Ok(json(
            StatusCode::CREATED,
            message_json(&video_to_wire(&video)),
        ))
    };
    result
        .await
        .unwrap_or_else(|refusal: Refusal| refusal.into_response())
}

/// A refusal: the status, and the HTTP status when it is not the code's usual one.
struct Refusal {
    status: tonic::Status,
    http: Option<StatusCode>,
}

impl From<ServiceError> for Refusal {
    fn from(error: ServiceError) -> Self {
        Refusal {
            status: error.into(),
            http: None,
        }
    }
}

impl Refusal {
    fn into_response(self) -> http::Response<Body> {
        error_response(&self.status, self.http).map(Body::new)
    }
}

fn bad_path(field: &str) -> Refusal {
    ServiceError::invalid_field(field, "must be an id, percent-encoded as UTF-8").into()
}

/// The caller, the file the query and `Content-Length` announce, and the body; checked
/// before a byte of the body is read.
fn accept(request: Request) -> Result<(Principal, pb::UploadHeader, Body), Refusal> {
    let (parts, body) = request.into_parts();
    // The auth layer put it there; without it the request did not pass the auth layer.
    let principal = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Refusal {
            status: tonic::Status::unauthenticated("missing token"),
            http: None,
        })?;
    let Some(length) = parts.headers.get(header::CONTENT_LENGTH) else {
        return Err(Refusal {
            status: ServiceError::invalid_field(
                "Content-Length",
                "required: the file's size in bytes (a chunked body cannot be checked against the quota before it is read)",
            )
            .into(),
            http: Some(StatusCode::LENGTH_REQUIRED),
        });
    };
    let mut violations = Violations::default();
    let size_bytes = length.to_str().ok().and_then(|v| v.parse::<u64>().ok());
    violations.check(
        size_bytes.is_some(),
        "Content-Length",
        "must be the file's size in bytes",
    );
    let mut file_name = None;
    let mut sha256 = None;
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        let slot = match key.as_ref() {
            "file_name" => &mut file_name,
            "sha256" => &mut sha256,
            other => {
                let shown: String = other.chars().take(40).collect();
                violations.add(
                    "query",
                    format!("unknown parameter {shown:?}: only file_name and sha256 are taken"),
                );
                continue;
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            violations.add(key.as_ref(), "given more than once");
        }
    }
    violations.check(
        file_name.is_some(),
        "file_name",
        "required: the file's name, as people will see it",
    );
    violations.check(
        sha256.is_some(),
        "sha256",
        "required: the lowercase hexadecimal SHA-256 of the whole file",
    );
    violations.into_result()?;
    Ok((
        principal,
        pb::UploadHeader {
            file_name: file_name.unwrap_or_default(),
            size_bytes: size_bytes.unwrap_or_default(),
            sha256: sha256.unwrap_or_default(),
        },
        body,
    ))
}

/// The body as the service layer takes an upload: pieces of at most a blob chunk (hyper's
/// frames are far smaller; a piece is a view of the frame, not a copy), and an interrupted
/// body as the error that says nothing was kept.
fn chunks(body: Body) -> impl Stream<Item = Result<Bytes, ServiceError>> + Unpin + Send {
    body.into_data_stream().flat_map(|frame| {
        let pieces = match frame {
            Ok(mut bytes) => {
                let mut pieces = Vec::with_capacity(1);
                while bytes.len() > BLOB_CHUNK_BYTES {
                    pieces.push(Ok(bytes.split_to(BLOB_CHUNK_BYTES)));
                }
                if !bytes.is_empty() {
                    pieces.push(Ok(bytes));
                }
                pieces
            }
            Err(err) => vec![Err(ServiceError::Aborted(format!(
                "the upload was interrupted ({err}); nothing was kept, send it again"
            )))],
        };
        futures::stream::iter(pieces)
    })
}

/// A castplane message in protobuf-JSON (as `protojson` and `@bufbuild/protobuf` write it).
fn message_json<M: prost::Message + prost::Name>(message: &M) -> serde_json::Value {
    castplane_proto::reflect::to_dynamic(message)
        .and_then(|dynamic| serde_json::to_value(&dynamic).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn json(status: StatusCode, value: serde_json::Value) -> http::Response<Body> {
    let mut response = http::Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `google.rpc` (Status and the standard details) for writing details as JSON.
static ERROR_TYPES: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(tonic_types::pb::FILE_DESCRIPTOR_SET).ok());

/// The status's `google.rpc` details, each in protobuf-JSON with its `@type`.
fn details_json(status: &tonic::Status) -> serde_json::Value {
    let details = ERROR_TYPES
        .as_ref()
        .and_then(|pool| pool.get_message_by_name("google.rpc.Status"))
        .filter(|_| !status.details().is_empty())
        .and_then(|descriptor| DynamicMessage::decode(descriptor, status.details()).ok())
        .and_then(|message| serde_json::to_value(&message).ok())
        .and_then(|mut value| value.get_mut("details").map(serde_json::Value::take));
    details.unwrap_or_else(|| serde_json::Value::Array(Vec::new()))
}

/// The JSON answer for a refused upload (module docs), under `http`, or the HTTP status
/// `google/rpc/code.proto` gives the code.
pub fn error_response(status: &tonic::Status, http: Option<StatusCode>) -> http::Response<String> {
    let (name, usual) = code_name_and_http(status.code());
    let body = serde_json::json!({
        "code": name,
        "message": status.message(),
        "details": details_json(status),
    });
    let mut response = http::Response::new(body.to_string());
    *response.status_mut() = http.unwrap_or(usual);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The code's name and its HTTP status, as `google/rpc/code.proto` documents them.
fn code_name_and_http(code: Code) -> (&'static str, StatusCode) {
    match code {
        Code::Ok => ("OK", StatusCode::OK),
        // 499 "Client Closed Request" has no constant.
        Code::Cancelled => (
            "CANCELLED",
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ),
        Code::Unknown => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        Code::InvalidArgument => ("INVALID_ARGUMENT", StatusCode::BAD_REQUEST),
        Code::DeadlineExceeded => ("DEADLINE_EXCEEDED", StatusCode::GATEWAY_TIMEOUT),
        Code::NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
        Code::AlreadyExists => ("ALREADY_EXISTS", StatusCode::CONFLICT),
        Code::PermissionDenied => ("PERMISSION_DENIED", StatusCode::FORBIDDEN),
        Code::ResourceExhausted => ("RESOURCE_EXHAUSTED", StatusCode::TOO_MANY_REQUESTS),
        Code::FailedPrecondition => ("FAILED_PRECONDITION", StatusCode::BAD_REQUEST),
        Code::Aborted => ("ABORTED", StatusCode::CONFLICT),
        Code::OutOfRange => ("OUT_OF_RANGE", StatusCode::BAD_REQUEST),
        Code::Unimplemented => ("UNIMPLEMENTED", StatusCode::NOT_IMPLEMENTED),
        Code::Internal => ("INTERNAL", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unavailable => ("UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
        Code::DataLoss => ("DATA_LOSS", StatusCode::INTERNAL_SERVER_ERROR),
        Code::Unauthenticated => ("UNAUTHENTICATED", StatusCode::UNAUTHORIZED),
    }
}

/// Rewrites the gRPC refusals of the layers in front of an upload route (no token, the
/// concurrency limit, the stream limit) into the uploads' JSON, so an HTTP client is never
/// answered `200 OK` with a `grpc-status` header it does not read.
pub fn http_errors_layer() -> MiddlewareLayer<HttpErrors> {
    MiddlewareLayer::new(HttpErrors)
}

#[derive(Clone, Copy, Debug)]
pub struct HttpErrors;

type TonicResponse = http::Response<tonic::body::Body>;

impl Middleware for HttpErrors {
    fn handle<S, B>(
        &self,
        mut inner: S,
        request: http::Request<B>,
    ) -> BoxFuture<'static, Result<TonicResponse, S::Error>>
    where
        S: Service<http::Request<B>, Response = TonicResponse> + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        if !is_upload_path(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let response = inner.call(request).await?;
            let grpc = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/grpc"));
            match tonic::Status::from_header_map(response.headers()) {
                Some(status) if grpc => {
                    Ok(error_response(&status, None).map(tonic::body::Body::new))
                }
                _ => Ok(response),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, StatusExt};

    use super::*;

    #[test]
    fn refusals_carry_the_code_name_the_http_status_and_readable_details() {
        let error = ServiceError::QuotaExceeded {
            message:
                "quota exceeded for the customer's disk: asked for 10 bytes, 3 bytes available"
                    .into(),
            resource: crate::domain::Resource::DiskMb,
            subject: "customer:cus_1".into(),
            asked: 10,
            available: 3,
        };
        let response = error_response(&error.into(), None);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(body["code"], "RESOURCE_EXHAUSTED");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("3 bytes available")
        );
        let details = body["details"].as_array().unwrap();
        let info = details
            .iter()
            .find(|d| d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo")
            .expect("ErrorInfo");
        assert_eq!(info["reason"], "QUOTA_EXCEEDED");
        assert_eq!(info["metadata"]["asked"], "10");
        assert_eq!(info["metadata"]["available"], "3");
        assert!(
            details
                .iter()
                .any(|d| d["@type"] == "type.googleapis.com/google.rpc.QuotaFailure")
        );

        let mut bad = ErrorDetails::new();
        bad.add_bad_request_violation("file.sha256", "must be 64 lowercase hexadecimal digits");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "invalid", bad);
        let response = error_response(&status, Some(StatusCode::LENGTH_REQUIRED));
        assert_eq!(response.status(), StatusCode::LENGTH_REQUIRED);
        let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
        assert_eq!(
            body["details"][0]["fieldViolations"][0]["field"],
            "file.sha256"
        );
        let plain = error_response(&tonic::Status::not_found("gone"), None);
        assert_eq!(plain.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(plain.body()).unwrap()["details"],
            serde_json::json!([])
        );
    }
}
