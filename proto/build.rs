use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "castplane/v1/common.proto",
    "castplane/v1/accounts.proto",
    "castplane/v1/catalog.proto",
    "castplane/v1/actions.proto",
    "castplane/v1/media_services.proto",
    "castplane/v1/nodes.proto",
    "castplane/v1/sessions.proto",
    "castplane/v1/media.proto",
    "castplane/agent/v1/agent.proto",
];

/// Messages carrying secrets get a hand-written, redacting `Debug` (see `src/redact.rs`).
const SECRET_MESSAGES: &[&str] = &[
    "castplane.v1.ConnectionInfo",
    "castplane.v1.CreateApiTokenResponse",
    "castplane.v1.NodeJoinToken",
    "castplane.v1.CreateSessionRequest",
    "castplane.v1.CreateSessionResponse",
    "castplane.v1.SetLoginRequest",
    "castplane.v1.ChangePasswordRequest",
    "castplane.agent.v1.JoinRequest",
    "castplane.agent.v1.ServiceSpec",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox is a pure-Rust protobuf compiler, so a fresh machine needs no `protoc`.
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection serves this descriptor set; `compile_fds` does not write it itself.
    std::fs::write(
        out_dir.join("castplane_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    // Type names let generic code find each message's descriptor (`crate::reflect`).
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .skip_debug(SECRET_MESSAGES.iter().copied())
        .codec_path("crate::codec::CastplaneCodec")
        .compile_fds_with_config(fds, config)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
