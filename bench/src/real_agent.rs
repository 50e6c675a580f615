//! The pipeline with one real `castplane-agent` process (the release binary) and real icecast
//! services on its node: the agent probes icecast2, keeps its action log on disk and runs its
//! supervisor; the actions are stops of stopped services (no-ops for icecast itself), the same
//! load the "before" figures of issue 6 were measured with.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use castplane_agent::state::DataDir;
use castplane_proto::v1 as pb;

use crate::control::ControlPlane;
use crate::pipeline::{LoadResult, closed_loop, create_nodes, create_services, owner};

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(
    control_binary: &std::path::Path,
    agent_binary: &std::path::Path,
    database_url: Option<String>,
    services: usize,
    levels: &[usize],
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Vec<LoadResult>> {
    let cp = ControlPlane::start(control_binary, database_url).await?;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(cp.admin().await?);
    }
    let admin = clients[0].clone();
    let owner = owner(&admin).await?;
    let token = create_nodes(&admin, "real-agent", 1, 2 * services as u32 + 4)
        .await?
        .pop()
        .context("a node")?;
    let dir = tempfile::Builder::new()
        .prefix("castplane-bench-agent-")
        .tempdir()?;
    let data_dir = dir.path().join("agent");
    let identity =
        castplane_agent::join(&[cp.agent_url()], &token, &DataDir::new(&data_dir)).await?;
    let log = std::fs::File::create(dir.path().join("agent.log"))?;
    let _agent = AgentProcess(
        Command::new(agent_binary)
            .args(["run", "--data-dir"])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", agent_binary.display()))?,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let node = admin
            .nodes()
            .get_node(pb::GetNodeRequest {
                id: identity.node_id.clone(),
            })
            .await?
            .into_inner();
        let icecast = node
            .capabilities
            .iter()
            .any(|c| c.r#type == pb::ServiceType::Icecast as i32 && c.available);
        if node.status == pb::NodeStatus::Online as i32 && icecast {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the real agent did not come online able to run icecast within 60 s (log: {})",
            dir.path().join("agent.log").display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let placement = vec![identity.node_id.clone(); services];
    let services = create_services(&admin, &owner, "real", &placement).await?;
    let mut results = Vec::new();
    for &in_flight in levels {
        results.push(closed_loop(&cp, &clients, &services, in_flight, warmup, duration).await?);
    }
    Ok(results)
}
