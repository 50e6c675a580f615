//! A minimal HTTP/1.0 GET against a local server: enough for status pages, and no HTTP client
//! dependency. HTTP/1.0 makes the server close the connection after the body, so reading to
//! EOF delimits it without chunked decoding.

use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Status pages are small; a larger answer means something other than the server answered.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `GET path` from `127.0.0.1:port`. Errors never contain the credentials.
pub async fn get(
    port: u16,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<Response, String> {
    tokio::time::timeout(timeout, get_inner(port, path, basic_auth))
        .await
        .map_err(|_| {
            format!(
                "GET {path} on port {port} timed out after {} ms",
                timeout.as_millis()
            )
        })?
}

async fn get_inner(
    port: u16,
    path: &str,
    basic_auth: Option<(&str, &str)>,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot connect to port {port}: {e}"))?;
    let mut request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: castplane-agent\r\n");
    if let Some((user, password)) = basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {path} on port {port}: {e}"))?;

    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("GET {path} on port {port}: {e}"))?;
    if raw.len() as u64 > MAX_RESPONSE {
        return Err(format!(
            "GET {path} on port {port}: response larger than {MAX_RESPONSE} bytes"
        ));
    }
    parse_response(&raw)
        .ok_or_else(|| format!("GET {path} on port {port}: malformed HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let header_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..header_end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(Response {
        status,
        body: raw[header_end + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_split_into_status_and_body() {
        let r = parse_response(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello")
            .expect("parses");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"hello");
        assert!(parse_response(b"garbage").is_none());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_none());
    }
}
