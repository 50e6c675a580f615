//! castplane's wire types: the public API `castplane.v1` and the agent protocol
//! `castplane.agent.v1`, generated from the `.proto` files beside this crate.

pub mod v1 {
    tonic::include_proto!("castplane.v1");
}

pub mod agent {
    // Generated: the stream's oneofs carry whole specs by value, which is what we want on the wire.
    #[allow(clippy::large_enum_variant)]
    pub mod v1 {
        tonic::include_proto!("castplane.agent.v1");
    }
}

pub mod codec;
pub mod join_token;

/// The canonical gRPC code names, as gRPC documentation and other tools spell them.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
mod redact;
pub mod reflect;

/// The encoded descriptor set of every castplane proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/castplane_descriptor.bin"));
