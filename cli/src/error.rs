//! castctl's one error type, and how it is shown to a person.

use std::error::Error as _;
use std::fmt::Write as _;
use std::process::ExitCode;

use tonic::Code;
use tonic_types::StatusExt;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is incomplete or wrong; exits 2, like clap's own usage errors, so
    /// scripts can tell "I called it wrong" from "the server said no".
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error status. Boxed: `Status` is large and every fallible
    /// function returns this type.
    #[error("{}", .0.message())]
    Status(Box<tonic::Status>),
    /// Anything else: connecting, the config file, prompts, an action that failed.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        CliError::Status(Box::new(status))
    }
}

impl From<dialoguer::Error> for CliError {
    fn from(err: dialoguer::Error) -> Self {
        CliError::Failed(format!("prompt failed: {err}"))
    }
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    pub fn failed(message: impl Into<String>) -> Self {
        CliError::Failed(message.into())
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Status(_) | CliError::Failed(_) => ExitCode::from(1),
        }
    }

    /// The full text for stderr: `error: …`, then one indented line per error detail.
    pub fn render(&self) -> String {
        match self {
            CliError::Status(status) => render_status(status),
            CliError::Usage(message) | CliError::Failed(message) => format!("error: {message}"),
        }
    }
}

/// An error and its causes on one line; transport errors say little without their sources.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some layers repeat their cause's message verbatim.
        if !text.ends_with(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn render_status(status: &tonic::Status) -> String {
    let mut message = status.message().to_owned();
    if let Some(source) = status.source() {
        let cause = chain(source);
        if message.is_empty() {
            message = cause;
        } else if !message.contains(&cause) {
            let _ = write!(message, ": {cause}");
        }
    }
    if message.is_empty() {
        message = "the server gave no message".to_owned();
    }
    let mut out = format!("error: {message} ({})", code_name(status.code()));
    // A detail often repeats the message word for word; then only its naming part is new.
    let described = |description: &str| {
        if description.is_empty() || message.contains(description) {
            String::new()
        } else {
            format!(": {description}")
        }
    };
    let details = status.get_error_details();
    if let Some(bad_request) = details.bad_request() {
        for v in &bad_request.field_violations {
            let _ = write!(out, "\n  invalid {}: {}", v.field, v.description);
        }
    }
    if let Some(quota) = details.quota_failure() {
        for v in &quota.violations {
            let _ = write!(out, "\n  quota {}{}", v.subject, described(&v.description));
        }
    }
    if let Some(precondition) = details.precondition_failure() {
        for v in &precondition.violations {
            let _ = write!(
                out,
                "\n  precondition {} on {}{}",
                v.r#type,
                v.subject,
                described(&v.description)
            );
        }
    }
    if status.code() == Code::Unauthenticated {
        out.push_str(
            "\n  hint: check the token (--token, CASTPLANE_TOKEN, or `castctl login`) and the endpoint",
        );
    }
    out
}

pub use castplane_proto::grpc_code_name as code_name;

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn status_shows_message_code_and_details() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("media_service.name", "must be lowercase");
        details.add_quota_failure_violation("reseller:rsl_1/customers", "asked for 1, 0 left");
        let status =
            tonic::Status::with_error_details(Code::InvalidArgument, "invalid request", details);
        let text = CliError::from(status).render();
        assert!(text.starts_with("error: invalid request (INVALID_ARGUMENT)"));
        assert!(text.contains("invalid media_service.name: must be lowercase"));
        assert!(text.contains("quota reseller:rsl_1/customers: asked for 1, 0 left"));
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(CliError::usage("x").exit_code(), ExitCode::from(2));
        assert_eq!(CliError::failed("x").exit_code(), ExitCode::from(1));
    }
}
