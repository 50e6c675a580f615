//! The service layer's error, and its one mapping onto gRPC statuses with standard details.

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Resource;
use crate::persistence::PersistenceError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{message}")]
    InvalidArgument {
        message: String,
        violations: Vec<FieldViolation>,
    },
    /// Also what anything outside the caller's tenancy answers: existence is never revealed.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// `asked` and `available` also travel as `ErrorInfo` metadata, so a client can show them
    /// beside the field that asked, without parsing the message.
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        resource: Resource,
        subject: String,
        asked: u64,
        available: u64,
    },
    /// Too many failed sign-ins: refused until the lock expires, whatever the password.
    #[error("{message}")]
    TooManyAttempts {
        message: String,
        retry_after: std::time::Duration,
    },
    /// A fixed per-account limit that is not a reseller quota (e.g. API tokens per principal).
    #[error("{message}")]
    LimitReached {
        message: String,
        subject: String,
        limit: &'static str,
    },
    #[error("{message}")]
    FailedPrecondition {
        message: String,
        violation_type: &'static str,
        subject: String,
    },
    #[error("{0}")]
    Unavailable(String),
    /// A concurrency conflict; the caller may retry.
    #[error("{0}")]
    Aborted(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl ServiceError {
    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let violation = FieldViolation {
            field: field.into(),
            description: description.into(),
        };
        Self::invalid(vec![violation])
    }

    /// Every violation found, reported at once.
    pub fn invalid(violations: Vec<FieldViolation>) -> Self {
        let message = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Self::InvalidArgument {
            message: format!("invalid request: {message}"),
            violations,
        }
    }

    pub fn precondition(
        violation_type: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::FailedPrecondition {
            message: message.into(),
            violation_type,
            subject: subject.into(),
        }
    }
}

impl From<PersistenceError> for ServiceError {
    fn from(value: PersistenceError) -> Self {
        match value {
            // The raw constraint text names tables and columns: log it, answer in words.
            // Callers that know which value clashed replace this with a precise message.
            PersistenceError::Conflict(detail) if detail.contains("port_allocations") => {
                tracing::debug!(%detail, "port allocation raced");
                ServiceError::Aborted(PORT_RACE.to_owned())
            }
            PersistenceError::Conflict(detail) => {
                tracing::debug!(%detail, "unique constraint refused a write");
                ServiceError::AlreadyExists("an object with that name already exists".to_owned())
            }
            PersistenceError::Busy(what) | PersistenceError::Unavailable(what) => {
                ServiceError::Unavailable(what)
            }
            PersistenceError::Aborted(what) => {
                tracing::debug!(%what, "transaction aborted");
                ServiceError::Aborted(
                    "the request conflicted with a concurrent one; retry it".to_owned(),
                )
            }
            PersistenceError::Database(err) => ServiceError::Internal(err.to_string()),
            PersistenceError::Corrupt(what) => ServiceError::Internal(what),
        }
    }
}

impl crate::persistence::MaybeAborted for ServiceError {
    fn aborted(&self) -> Option<&str> {
        match self {
            ServiceError::Aborted(reason) => Some(reason),
            _ => None,
        }
    }
}

/// The `domain` of castplane's `ErrorInfo` details.
pub const ERROR_DOMAIN: &str = "castplane.v1";

/// What a create answers when another one took the same port at the same instant, more than
/// its retries could absorb.
pub const PORT_RACE: &str = "a port was allocated concurrently; retry the request";

/// Collects field violations so a request reports all its problems at once.
#[derive(Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        });
    }

    pub fn check(&mut self, ok: bool, field: &str, description: impl Into<String>) {
        if !ok {
            self.add(field, description);
        }
    }

    pub fn into_result(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::invalid(self.0))
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidArgument {
                message,
                violations,
            } => {
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::NotFound(message) => tonic::Status::not_found(message),
            ServiceError::AlreadyExists(message) => tonic::Status::already_exists(message),
            ServiceError::PermissionDenied(message) => tonic::Status::permission_denied(message),
            ServiceError::Unauthenticated(message) => tonic::Status::unauthenticated(message),
            ServiceError::QuotaExceeded {
                message,
                resource,
                subject,
                asked,
                available,
            } => {
                let mut details = ErrorDetails::new();
                details.add_quota_failure_violation(
                    format!("{subject}/{}", resource.name()),
                    message.clone(),
                );
                details.set_error_info(
                    "QUOTA_EXCEEDED",
                    ERROR_DOMAIN,
                    [
                        ("resource".to_owned(), resource.name().to_owned()),
                        ("asked".to_owned(), asked.to_string()),
                        ("available".to_owned(), available.to_string()),
                    ],
                );
                tonic::Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ServiceError::TooManyAttempts {
                message,
                retry_after,
            } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(retry_after));
                details.set_error_info(
                    "SIGN_IN_LOCKED",
                    ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                );
                tonic::Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ServiceError::LimitReached {
                message,
                subject,
                limit,
            } => {
                let mut details = ErrorDetails::new();
                details.add_quota_failure_violation(format!("{subject}/{limit}"), message.clone());
                tonic::Status::with_error_details(Code::ResourceExhausted, message, details)
            }
            ServiceError::FailedPrecondition {
                message,
                violation_type,
                subject,
            } => {
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation(
                    violation_type,
                    subject,
                    message.clone(),
                );
                tonic::Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            ServiceError::Unavailable(message) => tonic::Status::unavailable(message),
            ServiceError::Aborted(message) => tonic::Status::aborted(message),
            ServiceError::Internal(message) => {
                // The detail goes to the log, not to the caller.
                tracing::error!(error = %message, "internal error");
                tonic::Status::internal("internal error")
            }
        }
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(value: sea_orm::DbErr) -> Self {
        PersistenceError::from(value).into()
    }
}
