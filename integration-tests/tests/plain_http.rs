//! A browser on a plain-HTTP public port (the demo's `http://127.0.0.1:7400/`) speaks
//! HTTP/1.1 — browsers use HTTP/2 only over TLS. Everything the console needs must answer it:
//! the app's files, gRPC-web, and the uploads.

use std::sync::Arc;

use bytes::Bytes;
use castplane_control::ServiceConfig;
use castplane_integration_tests::control_plane::Configure;
use castplane_integration_tests::{Backend, ControlPlaneHandle};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One HTTP/1.1 request to the plain-HTTP public port: the status, headers and body.
async fn http1(
    cp: &ControlPlaneHandle,
    request: http::request::Builder,
    body: &[u8],
) -> (http::StatusCode, http::HeaderMap, String) {
    let port = cp
        .public_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("the public port");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    let request = request
        .version(http::Version::HTTP_11)
        .header(http::header::HOST, format!("127.0.0.1:{port}"))
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.version(), http::Version::HTTP_11);
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_browser_on_plain_http_gets_the_console_its_api_and_the_uploads() {
    let console = tempfile::tempdir().expect("a console dir");
    std::fs::write(
        console.path().join("index.html"),
        "<!doctype html>castplane console",
    )
    .expect("index.html");
    let dir = console.path().to_owned();
    let configure: Configure = Arc::new(move |config| {
        config.public_tls = None;
        config.console_dir = Some(dir.clone());
    });
    let cp = ControlPlaneHandle::start_configured(
        Backend::Sqlite,
        ServiceConfig::default(),
        Some(configure),
        false,
    )
    .await;

    // The app, on its own routes too.
    for path in ["/", "/services/svc_123"] {
        let (status, _, body) = http1(&cp, http::Request::get(path), b"").await;
        assert_eq!(status, 200, "GET {path}: {body}");
        assert!(body.contains("castplane console"), "{body}");
    }

    // gRPC-web, as the console's API client sends it.
    let (status, headers, _) = http1(
        &cp,
        http::Request::post("/castplane.v1.CatalogService/ListServiceTypes")
            .header(http::header::CONTENT_TYPE, "application/grpc-web+proto")
            .header("x-grpc-web", "1"),
        &[0, 0, 0, 0, 0],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["grpc-status"], "16",
        "UNAUTHENTICATED without a token"
    );

    // The uploads reach their endpoint: its JSON refusals, not a bare 400.
    let upload = "/uploads/v1/customers/cus_nobody/tracks?file_name=a.mp3&sha256=00";
    let (status, _, body) = http1(&cp, http::Request::post(upload), b"abc").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("UNAUTHENTICATED"), "{body}");
    // With a token, the body reaches the service layer, which finds no such customer.
    let sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let (status, _, body) = http1(
        &cp,
        http::Request::post(format!(
            "/uploads/v1/customers/cus_00000000000000000000000000/tracks?file_name=a.mp3&sha256={sha256}"
        ))
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", cp.admin_token()),
        ),
        b"abc",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NOT_FOUND"), "{body}");
}
