//! `Debug` for messages that carry secrets: the secret fields print as `<redacted>`, so a stray
//! `{:?}` in a log line never leaks a password, token or join token.

use std::fmt;

use crate::agent::v1::{JoinRequest, ServiceSpec};
use crate::v1::{ConnectionInfo, CreateApiTokenResponse, NodeJoinToken};

const REDACTED: &str = "<redacted>";

/// `rtmp://host:port/<secret>/live` → `rtmp://host:port/<redacted>`.
fn redact_path(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, _)) => format!("{scheme}://{authority}/{REDACTED}"),
            None => url.to_owned(),
        },
        None if url.is_empty() => String::new(),
        None => REDACTED.to_owned(),
    }
}

impl fmt::Debug for ConnectionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionInfo")
            .field("media_service_id", &self.media_service_id)
            .field("stream_url", &self.stream_url)
            .field("source_host", &self.source_host)
            .field("source_port", &self.source_port)
            .field("mount", &self.mount)
            .field("source_username", &self.source_username)
            .field("source_password", &REDACTED)
            // A video ingest URL's path is the publishing secret.
            .field("ingest_url", &redact_path(&self.ingest_url))
            .finish()
    }
}

impl fmt::Debug for CreateApiTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateApiTokenResponse")
            .field("token_id", &self.token_id)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for NodeJoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeJoinToken")
            .field("token", &REDACTED)
            .field("expire_time", &self.expire_time)
            .finish()
    }
}

impl fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinRequest")
            .field("token", &REDACTED)
            .field("csr_pem", &self.csr_pem)
            .finish()
    }
}

impl fmt::Debug for ServiceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("display_name", &self.display_name)
            .field("type", &self.r#type)
            .field("ports", &self.ports)
            .field("max_listeners", &self.max_listeners)
            .field("max_bitrate_kbps", &self.max_bitrate_kbps)
            .field("autodj", &self.autodj)
            .field("owner_customer_id", &self.owner_customer_id)
            .field("source_password", &REDACTED)
            .field("admin_password", &REDACTED)
            .field("relay_password", &REDACTED)
            .field("public_host", &self.public_host)
            .field("desired_running", &self.desired_running)
            .field("generation", &self.generation)
            .field("bind_address", &self.bind_address)
            .field("media_tracks", &self.media_tracks)
            .field("video_files", &self.video_files)
            .finish()
    }
}

mod sessions {
    use std::fmt;

    use super::REDACTED;
    use crate::v1::{
        ChangePasswordRequest, CreateSessionRequest, CreateSessionResponse, SetLoginRequest,
    };

    impl fmt::Debug for CreateSessionRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateSessionRequest")
                .field("email", &self.email)
                .field("password", &REDACTED)
                .finish()
        }
    }

    impl fmt::Debug for CreateSessionResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateSessionResponse")
                .field("token", &REDACTED)
                .field("expire_time", &self.expire_time)
                .field("idle_timeout_seconds", &self.idle_timeout_seconds)
                .field("caller", &self.caller)
                .finish()
        }
    }

    impl fmt::Debug for SetLoginRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SetLoginRequest")
                .field("principal_kind", &self.principal_kind)
                .field("principal_id", &self.principal_id)
                .field("email", &self.email)
                .field("password", &REDACTED)
                .finish()
        }
    }

    impl fmt::Debug for ChangePasswordRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ChangePasswordRequest")
                .field("current_password", &REDACTED)
                .field("new_password", &REDACTED)
                .finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_output() {
        let spec = ServiceSpec {
            source_password: "hunter2-source".into(),
            admin_password: "hunter2-admin".into(),
            relay_password: "hunter2-relay".into(),
            ..Default::default()
        };
        let printed = format!("{spec:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        let token = CreateApiTokenResponse {
            token_id: "tok_1".into(),
            secret: "s3cret".into(),
        };
        assert!(!format!("{token:?}").contains("s3cret"));
        let info = ConnectionInfo {
            ingest_url: "rtmp://h:1935/Pa55w0rd-secret/live".into(),
            source_password: "Pa55w0rd-secret".into(),
            ..Default::default()
        };
        let printed = format!("{info:?}");
        assert!(!printed.contains("Pa55w0rd"), "{printed}");
        assert!(printed.contains("rtmp://h:1935/<redacted>"), "{printed}");
        let join = JoinRequest {
            token: "join-s3cret".into(),
            csr_pem: String::new(),
        };
        assert!(!format!("{join:?}").contains("join-s3cret"));
    }
}
