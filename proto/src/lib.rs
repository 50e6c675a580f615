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
mod redact;
pub mod reflect;

/// The encoded descriptor set of every castplane proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/castplane_descriptor.bin"));
