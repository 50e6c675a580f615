//! The checks every public request passes before its handler sees it, in one place: every
//! string field of every message (nested and repeated ones included) is walked through the
//! message's descriptor, so a field added to the API later is covered without anyone
//! remembering to.
//!
//! - Ids (`id` and every `*_id` field) must have the shape this server issues
//!   ([`crate::ids::is_valid_id`]); anything else cannot name an object and is refused, on
//!   SQLite and PostgreSQL alike (PostgreSQL refuses NUL bytes in text, which used to surface
//!   as an internal error).
//! - No string may hold control characters: they end up in config files, terminals and logs.
//! - Every string is bounded; free text (names, descriptions) tighter than the rest.
//!
//! What a field means (a service name's alphabet, a port range) stays with the handler's
//! conversion; this only keeps what no field may carry from reaching the rules at all.

use prost::{Message, Name};
use prost_reflect::{DynamicMessage, Value};

use crate::error::{ServiceError, Violations};

/// Free text people type: names and descriptions.
pub const MAX_TEXT_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;
/// Page tokens this server issues are far shorter.
pub const MAX_PAGE_TOKEN_CHARS: usize = 512;
/// Anything else (hosts, field-mask paths, join tokens).
pub const MAX_STRING_CHARS: usize = 1024;

/// Refuses `message` with every violation found, or lets it through.
pub fn check<M: Message + Name>(message: &M) -> Result<(), ServiceError> {
    let Some(dynamic) = castplane_proto::reflect::to_dynamic(message) else {
        // Only a message type missing from the compiled descriptors lands here.
        return Err(ServiceError::Internal(format!(
            "no descriptor for {}",
            M::full_name()
        )));
    };
    let mut violations = Violations::default();
    walk(&dynamic, "", &mut violations);
    violations.into_result()
}

fn walk(message: &DynamicMessage, prefix: &str, violations: &mut Violations) {
    for (field, value) in message.fields() {
        let path = if prefix.is_empty() {
            field.name().to_owned()
        } else {
            format!("{prefix}.{}", field.name())
        };
        match value {
            Value::String(text) => check_string(field.name(), &path, text, violations),
            Value::Message(inner) => walk(inner, &path, violations),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    match item {
                        Value::String(text) => check_string(field.name(), &path, text, violations),
                        Value::Message(inner) => walk(inner, &path, violations),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn check_string(name: &str, path: &str, text: &str, violations: &mut Violations) {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        violations.add(
            path,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        );
        return;
    }
    let chars = text.chars().count();
    let too_long = |max: usize, violations: &mut Violations| {
        if chars > max {
            violations.add(path, format!("must be at most {max} characters"));
            true
        } else {
            false
        }
    };
    match name {
        n if n == "id" || n.ends_with("_id") => {
            if !crate::ids::is_valid_id(text) {
                violations.add(path, crate::ids::ID_SHAPE);
            }
        }
        "page_token" => {
            if !too_long(MAX_PAGE_TOKEN_CHARS, violations)
                && !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                violations.add(path, "not a token this server issued");
            }
        }
        "display_name" | "description" => {
            too_long(MAX_TEXT_CHARS, violations);
        }
        "email" => {
            too_long(MAX_EMAIL_CHARS, violations);
        }
        _ => {
            too_long(MAX_STRING_CHARS, violations);
        }
    }
}

#[cfg(test)]
mod tests {
    use castplane_proto::v1 as pb;

    use super::*;

    fn fields_of(err: ServiceError) -> Vec<String> {
        match err {
            ServiceError::InvalidArgument { violations, .. } => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn nul_bytes_and_malformed_ids_are_refused_wherever_they_are() {
        let request = pb::CreateMediaServiceRequest {
            media_service: Some(pb::MediaService {
                customer_id: "cus_\0".into(),
                display_name: "Radio\0One".into(),
                name: "radio".into(),
                ..Default::default()
            }),
            remember_type_as_default: false,
        };
        let fields = fields_of(check(&request).unwrap_err());
        // In field-number order, every violation at once.
        assert_eq!(
            fields,
            vec!["media_service.display_name", "media_service.customer_id"]
        );
        let mask = pb::UpdateCustomerRequest {
            customer: None,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["email".into(), "e\u{1b}[2J".into()],
            }),
        };
        assert_eq!(
            fields_of(check(&mask).unwrap_err()),
            vec!["update_mask.paths[1]"]
        );
    }

    #[test]
    fn well_formed_requests_pass() {
        let id = crate::ids::new_id("rsl");
        assert!(check(&pb::GetResellerRequest { id }).is_ok());
        assert!(check(&pb::ListResellersRequest::default()).is_ok());
        let token = pb::CreateApiTokenRequest {
            principal_kind: 1,
            principal_id: String::new(),
            description: "billing sync — café".into(),
        };
        assert!(check(&token).is_ok());
    }

    #[test]
    fn free_text_and_page_tokens_are_bounded() {
        let long = pb::CreateApiTokenRequest {
            principal_kind: 1,
            principal_id: String::new(),
            description: "x".repeat(MAX_TEXT_CHARS + 1),
        };
        assert_eq!(fields_of(check(&long).unwrap_err()), vec!["description"]);
        let forged = pb::ListResellersRequest {
            page_size: 1,
            page_token: "not base64!".into(),
        };
        assert_eq!(fields_of(check(&forged).unwrap_err()), vec!["page_token"]);
    }
}
