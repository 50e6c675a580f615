//! `node add|list|get|token|delete`.

use castplane_proto::v1 as pb;

use super::Ctx;
use crate::cli::NodeCommand;
use crate::error::Result;
use crate::json::{self, ToJson};
use crate::lookup;
use crate::output::{enum_text, fields, or_dash, render, table, time_text};

pub async fn run(ctx: &Ctx, command: NodeCommand) -> Result<()> {
    let mut client = ctx.api.nodes.clone();
    match command {
        NodeCommand::Add {
            name,
            public_host,
            bind_address,
            ports,
            capacity,
            token_ttl,
        } => {
            let node = pb::Node {
                name,
                public_host,
                bind_address: bind_address.unwrap_or_default(),
                port_range: Some(pb::PortRange {
                    first: ports.first.into(),
                    last: ports.last.into(),
                }),
                capacity,
                ..Default::default()
            };
            let created = client
                .create_node(pb::CreateNodeRequest {
                    node: Some(node),
                    join_token_ttl_seconds: token_ttl.unwrap_or(0),
                })
                .await?
                .into_inner();
            // Showing the join token is this command's purpose.
            ctx.out.emit(
                || created.to_json(),
                || {
                    let node = created.node.clone().unwrap_or_default();
                    let token = created.join_token.clone().unwrap_or_default();
                    format!("{}\n\n{}", node_detail(&node), join_text(&token))
                },
            )
        }
        NodeCommand::List => {
            let nodes = lookup::list_nodes(&ctx.api).await?;
            ctx.out
                .emit(|| json::list("nodes", &nodes), || list_table(&nodes))
        }
        NodeCommand::Get { node } => {
            let node = lookup::node(&ctx.api, &node).await?;
            ctx.out.emit(|| node.to_json(), || node_detail(&node))
        }
        NodeCommand::Token { node, ttl } => {
            let node = lookup::node(&ctx.api, &node).await?;
            let token = client
                .create_node_join_token(pb::CreateNodeJoinTokenRequest {
                    node_id: node.id,
                    ttl_seconds: ttl.unwrap_or(0),
                })
                .await?
                .into_inner();
            ctx.out.emit(|| token.to_json(), || join_text(&token))
        }
        NodeCommand::Delete { node } => {
            let node = lookup::node(&ctx.api, &node).await?;
            client
                .delete_node(pb::DeleteNodeRequest {
                    id: node.id.clone(),
                })
                .await?;
            ctx.out.emit(
                || serde_json::json!({ "deleted": node.id }),
                || {
                    format!(
                        "Deleted node {} ({}); its agent's certificate no longer works.",
                        node.name, node.id
                    )
                },
            )
        }
    }
}

fn join_text(token: &pb::NodeJoinToken) -> String {
    format!(
        "Join token (shown once; valid for one join until {}):\n  {}\n\
         On the host, with the token in CASTPLANE_JOIN_TOKEN (which keeps it out of `ps`), run:\n  \
         castplane-agent join --control-plane https://CONTROL-PLANE:7401 --data-dir /var/lib/castplane-agent",
        time_text(token.expire_time.as_ref()),
        token.token,
    )
}

/// Available plugins, e.g. `icecast+autodj, video`.
fn capabilities_text(node: &pb::Node) -> String {
    let available: Vec<String> = node
        .capabilities
        .iter()
        .filter(|c| c.available)
        .map(|c| {
            let mut text = enum_text::<pb::ServiceType>(c.r#type);
            if c.autodj_available {
                text.push_str("+autodj");
            }
            text
        })
        .collect();
    if available.is_empty() {
        "none".to_owned()
    } else {
        available.join(", ")
    }
}

fn ports_text(node: &pb::Node) -> String {
    match &node.port_range {
        Some(range) => format!(
            "{}/{} ({}-{})",
            node.ports_used,
            range.last.saturating_sub(range.first) + 1,
            range.first,
            range.last
        ),
        None => node.ports_used.to_string(),
    }
}

fn services_text(node: &pb::Node) -> String {
    if node.capacity == 0 {
        node.service_count.to_string()
    } else {
        format!("{}/{}", node.service_count, node.capacity)
    }
}

fn node_detail(node: &pb::Node) -> String {
    let summary = render(&fields(vec![
        ("Id", node.id.clone()),
        ("Name", node.name.clone()),
        ("Public host", node.public_host.clone()),
        (
            "Bind address",
            if node.bind_address.is_empty() {
                "(what the public host resolves to on the node)".to_owned()
            } else {
                node.bind_address.clone()
            },
        ),
        ("Status", enum_text::<pb::NodeStatus>(node.status)),
        ("Ports used", ports_text(node)),
        ("Services", services_text(node)),
        ("Agent version", or_dash(&node.agent_version)),
        (
            "Last heartbeat",
            time_text(node.last_heartbeat_time.as_ref()),
        ),
        ("Joined", time_text(node.join_time.as_ref())),
        (
            "Certificate expires",
            time_text(node.certificate_expire_time.as_ref()),
        ),
        ("Created", time_text(node.create_time.as_ref())),
    ]));
    if node.capabilities.is_empty() {
        return format!("{summary}\nCapabilities: none reported yet");
    }
    let mut t = table(["TYPE", "AVAILABLE", "VERSION", "AUTODJ", "DETAIL"]);
    for c in &node.capabilities {
        t.add_row(vec![
            enum_text::<pb::ServiceType>(c.r#type),
            if c.available { "yes" } else { "no" }.to_owned(),
            or_dash(&c.version),
            if c.autodj_available { "yes" } else { "no" }.to_owned(),
            c.detail.clone(),
        ]);
    }
    format!("{summary}\n\n{}", render(&t))
}

fn list_table(nodes: &[pb::Node]) -> String {
    let mut t = table([
        "NAME",
        "ID",
        "STATUS",
        "CAPABILITIES",
        "SERVICES",
        "PORTS",
        "LAST-HEARTBEAT",
    ]);
    for n in nodes {
        t.add_row(vec![
            n.name.clone(),
            n.id.clone(),
            enum_text::<pb::NodeStatus>(n.status),
            capabilities_text(n),
            services_text(n),
            ports_text(n),
            time_text(n.last_heartbeat_time.as_ref()),
        ]);
    }
    render(&t)
}
