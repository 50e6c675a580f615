// The Resellers Dashboard: usage bars per resource, "+ Media Service", recent actions.
import { api } from "../api";
import { useLoad } from "../hooks";
import { useSession } from "../session";
import { ErrorNotice, Loading, PageHeader } from "../components/ui";
import { UsageMeter } from "../components/UsageMeter";
import { RecentActions } from "../components/RecentActions";

export function Dashboard() {
  const session = useSession();
  const usage = useLoad(
    (signal) =>
      session.isReseller ? api.catalog.getResellerUsage({}, { signal }) : Promise.resolve(undefined),
    [],
  );
  return (
    <>
      <PageHeader title="Dashboard">
        {!session.isCustomer && (
          <a class="button primary" href="/create">
            + Media Service
          </a>
        )}
      </PageHeader>
      <p class="lede">Signed in as {session.caller.displayName}.</p>
      {session.isReseller && (
        <section aria-labelledby="usage-title" class="card">
          <h2 id="usage-title">Usage</h2>
          <ErrorNotice problem={usage.error} />
          {usage.loading && !usage.data && <Loading what="usage" />}
          <div class="usage-grid">
            {usage.data?.resources.map((r) => <UsageMeter usage={r} />)}
          </div>
        </section>
      )}
      {session.isAdmin && (
        <section class="card" aria-labelledby="admin-title">
          <h2 id="admin-title">Provider</h2>
          <p>
            Manage <a href="/resellers">resellers</a> (their limits and allowed service types) and{" "}
            <a href="/nodes">nodes</a> (streaming hosts and their agents).
          </p>
        </section>
      )}
      <section class="card" aria-labelledby="recent-title">
        <h2 id="recent-title">Recent actions</h2>
        <RecentActions />
      </section>
    </>
  );
}
