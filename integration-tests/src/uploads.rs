//! The browsers' uploads (`POST /uploads/v1/…`, the file as the body) as the console sends
//! them: HTTP/2 over a real TLS connection (rustls with ring) to the public port, checked
//! against the control plane's certificate.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::ControlPlaneHandle;
use crate::media::sha256_hex;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type UploadBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What the server answered: the HTTP status and the JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: serde_json::Value,
}

impl Answer {
    /// The `code` of a refusal (`"RESOURCE_EXHAUSTED"` …).
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or_default()
    }

    /// The refusal's detail of `google.rpc.<name>` (`ErrorInfo`, `BadRequest` …).
    pub fn detail(&self, name: &str) -> Option<&serde_json::Value> {
        let wanted = format!("type.googleapis.com/google.rpc.{name}");
        self.json["details"]
            .as_array()?
            .iter()
            .find(|d| d["@type"] == wanted.as_str())
    }

    /// The fields a `BadRequest` detail names.
    pub fn bad_fields(&self) -> Vec<String> {
        self.detail("BadRequest")
            .and_then(|d| d["fieldViolations"].as_array())
            .map(|violations| {
                violations
                    .iter()
                    .filter_map(|v| v["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub fn full(bytes: &[u8]) -> UploadBody {
    Full::new(Bytes::copy_from_slice(bytes))
        .map_err(|never| match never {})
        .boxed()
}

/// A body that sends `first` and then nothing, ever (a client gone quiet, or cut off).
pub fn stalled(first: &[u8]) -> UploadBody {
    let first = Bytes::copy_from_slice(first);
    let frames = futures::StreamExt::chain(
        futures::stream::iter([Ok::<_, BoxError>(hyper::body::Frame::data(first))]),
        futures::stream::pending(),
    );
    http_body_util::StreamBody::new(frames).boxed()
}

/// A body of `bytes` whose length is not announced (hyper then sends no `Content-Length`).
pub fn unsized_body(bytes: &[u8]) -> UploadBody {
    let frames = futures::stream::iter([Ok::<_, BoxError>(hyper::body::Frame::data(
        Bytes::copy_from_slice(bytes),
    ))]);
    http_body_util::StreamBody::new(frames).boxed()
}

/// POSTs `body` to `path_and_query` with `token` as the bearer and `content_length` if given.
pub async fn post(
    cp: &ControlPlaneHandle,
    token: Option<&str>,
    path_and_query: &str,
    content_length: Option<u64>,
    body: UploadBody,
) -> Answer {
    let url = cp.public_url();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the public URL's port");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the public port");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cp.public_ca_pem.as_bytes()).expect("the public cert"))
        .expect("trust the public cert");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // What browsers negotiate on this port (module docs of the control plane's uploads.rs).
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("{url}{path_and_query}"))
        .header(http::header::CONTENT_TYPE, "application/octet-stream");
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(length) = content_length {
        request = request.header(http::header::CONTENT_LENGTH, length);
    }
    let response = sender
        .send_request(request.body(body).expect("request"))
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("the answer's body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {:?}", String::from_utf8_lossy(&bytes)));
    Answer { status, json }
}

/// `?file_name=…&sha256=…` for `bytes` named `name`.
pub fn query(name: &str, bytes: &[u8]) -> String {
    let encoded: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("file_name", name)
        .append_pair("sha256", &sha256_hex(bytes))
        .finish();
    format!("?{encoded}")
}

/// Uploads `bytes` as `name` into the customer's library, as the console does.
pub async fn upload_track(
    cp: &ControlPlaneHandle,
    token: &str,
    customer_id: &str,
    name: &str,
    bytes: &[u8],
) -> Answer {
    let path = format!(
        "/uploads/v1/customers/{customer_id}/tracks{}",
        query(name, bytes)
    );
    post(
        cp,
        Some(token),
        &path,
        Some(bytes.len() as u64),
        full(bytes),
    )
    .await
}

/// Uploads `bytes` as `name` to a video service, as the console does.
pub async fn upload_video(
    cp: &ControlPlaneHandle,
    token: &str,
    service_id: &str,
    name: &str,
    bytes: &[u8],
) -> Answer {
    let path = format!(
        "/uploads/v1/services/{service_id}/videos{}",
        query(name, bytes)
    );
    post(
        cp,
        Some(token),
        &path,
        Some(bytes.len() as u64),
        full(bytes),
    )
    .await
}
