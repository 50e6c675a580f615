// For the admin: streaming hosts, whether their agents are connected, and what they can run.
import { api } from "../api";
import { useInterval, useLoad } from "../hooks";
import { NodeStatus } from "../gen/castplane/v1/nodes_pb";
import { NODE_STATUS, SERVICE_TYPE, isoWhen, when } from "../format";
import { ErrorNotice, Loading, PageHeader } from "../components/ui";

export function Nodes() {
  const nodes = useLoad((signal) => api.nodes.listNodes({ pageSize: 1000 }, { signal }), []);
  useInterval(nodes.reload, 5000);
  return (
    <>
      <PageHeader title="Nodes" />
      <p class="lede">
        Add a node with <code>castctl node add</code>; its agent joins with the printed token.
      </p>
      <ErrorNotice problem={nodes.error} />
      {!nodes.data && !nodes.error && <Loading what="nodes" />}
      {nodes.data?.nodes.length === 0 && <p class="muted">No nodes yet.</p>}
      <div class="grid">
        {nodes.data?.nodes.map((n) => (
          <section class="card" aria-labelledby={`node-${n.id}`}>
            <h2 id={`node-${n.id}`}>{n.name}</h2>
            <dl class="facts">
              <dt>Status</dt>
              <dd>
                <span class={`state ${n.status === NodeStatus.ONLINE ? "state-running" : "state-failed"}`}>
                  {NODE_STATUS[n.status]}
                </span>
              </dd>
              <dt>Last heartbeat</dt>
              <dd>
                <time dateTime={isoWhen(n.lastHeartbeatTime)}>{when(n.lastHeartbeatTime)}</time>
              </dd>
              <dt>Public host</dt>
              <dd>
                <code>{n.publicHost}</code>
              </dd>
              <dt>Ports</dt>
              <dd>
                {n.portRange?.first}–{n.portRange?.last} ({n.portsUsed} used)
              </dd>
              <dt>Services</dt>
              <dd>
                {n.serviceCount}
                {n.capacity > 0 && ` of ${n.capacity}`}
              </dd>
              <dt>Agent</dt>
              <dd>{n.agentVersion || "—"}</dd>
            </dl>
            <h3>Capabilities</h3>
            <ul class="capabilities">
              {n.capabilities.map((c) => (
                <li class={c.available ? "yes" : "no"}>
                  <strong>{SERVICE_TYPE[c.type]}</strong>: {c.available ? c.version || "available" : "not available"}
                  {c.autodjAvailable && " · AutoDJ"}
                  {c.detail && <span class="muted"> — {c.detail}</span>}
                </li>
              ))}
              {n.capabilities.length === 0 && <li class="muted">Not reported yet.</li>}
            </ul>
          </section>
        ))}
      </div>
    </>
  );
}
