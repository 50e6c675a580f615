//! The fleet the console's browser tests run against: a real control plane (SQLite, TLS on the
//! public API, the console's built assets on the same port), one node with a real agent that
//! runs icecast2 and nginx-rtmp. Prints one JSON line (URL, admin token, CA file) on stdout
//! once the node is online, then runs until SIGTERM, SIGINT or stdin closes, and stops the
//! agent's servers before exiting.
//!
//! Usage: `console-fixture CONSOLE_DIST_DIR`

use std::path::PathBuf;

use castplane_control::ServiceConfig;
use castplane_integration_tests::{AgentHandle, Backend, ControlPlaneHandle, free_port_range};
use castplane_proto::v1 as pb;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    castplane_integration_tests::init_tracing_with_default("warn");
    let dist = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: console-fixture CONSOLE_DIST_DIR"))?;
    let dist = std::fs::canonicalize(&dist)?;
    let mut cp =
        ControlPlaneHandle::start_serving(Backend::Sqlite, ServiceConfig::default(), Some(dist))
            .await;
    let admin = cp.admin().await;
    let (first, last) = free_port_range(40);
    let (node, token) = admin.create_node("console-host", first, last).await;
    let agent = AgentHandle::join_and_start(&cp, &token).await;
    admin
        .wait_node_ready(&node.id, pb::ServiceType::Icecast)
        .await;
    let ca_dir = tempfile::tempdir()?;
    let ca_path = ca_dir.path().join("public-ca.pem");
    std::fs::write(&ca_path, &cp.public_ca_pem)?;
    println!(
        "{}",
        serde_json::json!({
            "url": cp.public_url(),
            "adminToken": cp.admin_token(),
            "caPath": ca_path,
            "nodeId": node.id,
        })
    );

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    // A plain thread, not tokio's stdin: a blocking read would hold up the runtime's shutdown.
    let (stdin_closed, closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = stdin_closed.send(());
    });
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = closed => {}
    }
    agent.shutdown().await;
    cp.stop().await;
    Ok(())
}
