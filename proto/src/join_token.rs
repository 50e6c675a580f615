//! The node join token, `cpjoin.<secret>.<sha256 of the control plane's CA certificate>`:
//! written by the control plane, read by both it (the secret) and the agent (the CA hash it
//! pins before sending anything). One definition, so the two can never disagree.

const PREFIX: &str = "cpjoin";

/// The name the control plane's agent-listener certificate carries, whatever address an agent
/// dials; trust is pinned to the internal CA, so one fixed name is enough.
pub const CONTROL_PLANE_SERVER_NAME: &str = "control.castplane.internal";

pub fn format(secret: &str, ca_sha256_hex: &str) -> String {
    format!("{PREFIX}.{secret}.{ca_sha256_hex}")
}

/// `(secret, ca_sha256_hex)`, or None when `token` is not a join token.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let mut parts = token.trim().splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(PREFIX), Some(secret), Some(hash))
            if !secret.is_empty()
                && hash.len() == 64
                && hash.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Some((secret, hash))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_parse_strictly() {
        let hash = "ab".repeat(32);
        let token = format("s3cret", &hash);
        assert_eq!(parse(&token), Some(("s3cret", hash.as_str())));
        assert_eq!(parse("cpjoin.s3cret.short"), None);
        assert_eq!(parse(&format!("other.s3cret.{hash}")), None);
        assert_eq!(parse(&format!("cpjoin..{hash}")), None);
        assert_eq!(parse(&format!("cpjoin.s3cret.{}", "zz".repeat(32))), None);
    }
}
