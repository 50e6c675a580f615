import { api } from "../api";
import { useInterval, useLoad } from "../hooks";
import { ACTION_KIND, ACTION_STATE, actor, isoWhen, when } from "../format";
import { ActionState } from "../gen/castplane/v1/actions_pb";
import { ErrorNotice, Loading } from "./ui";

/** The newest actions the caller can see, all services or one. */
export function RecentActions(props: { mediaServiceId?: string; pageSize?: number }) {
  const actions = useLoad(
    (signal) =>
      api.actions.listActions(
        {
          mediaServiceId: props.mediaServiceId ?? "",
          orderBy: "create_time desc",
          pageSize: props.pageSize ?? 10,
        },
        { signal },
      ),
    [props.mediaServiceId],
  );
  useInterval(actions.reload, 5000);
  if (actions.loading && !actions.data) return <Loading what="actions" />;
  return (
    <>
      <ErrorNotice problem={actions.error} />
      {actions.data?.actions.length === 0 && <p class="muted">No actions yet.</p>}
      {!!actions.data?.actions.length && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Action</th>
                {!props.mediaServiceId && <th scope="col">Service</th>}
                <th scope="col">State</th>
                <th scope="col">Requested</th>
                <th scope="col">By</th>
              </tr>
            </thead>
            <tbody>
              {actions.data.actions.map((a) => (
                <tr>
                  <td>{ACTION_KIND[a.kind]}</td>
                  {!props.mediaServiceId && (
                    <td>
                      <a href={`/services/${a.mediaServiceId}`}>{a.mediaServiceId}</a>
                    </td>
                  )}
                  <td>
                    <span class={`state state-${ACTION_STATE[a.state].toLowerCase()}`}>
                      {ACTION_STATE[a.state]}
                    </span>
                    {a.state === ActionState.FAILED && a.error && (
                      <span class="muted"> — {a.error}</span>
                    )}
                  </td>
                  <td>
                    <time dateTime={isoWhen(a.createTime)}>{when(a.createTime)}</time>
                  </td>
                  <td>{actor(a.requestedBy)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
