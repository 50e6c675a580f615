// An action's progress, live from WatchAction until it succeeds or fails: every state it
// passes through, and the reason when it fails. Announced to screen readers as it changes.
import { useEffect, useState } from "preact/hooks";
import type { Action } from "../gen/castplane/v1/actions_pb";
import { ActionState } from "../gen/castplane/v1/actions_pb";
import { api } from "../api";
import { ACTION_KIND, ACTION_STATE, isoWhen, when } from "../format";
import { problem } from "../problem";

const STEPS = [
  ActionState.QUEUED,
  ActionState.DISPATCHED,
  ActionState.RUNNING,
  ActionState.SUCCEEDED,
];

export function isFinished(action: Action): boolean {
  return action.state === ActionState.SUCCEEDED || action.state === ActionState.FAILED;
}

export function ActionProgress(props: { action: Action; onDone?: (action: Action) => void }) {
  const [action, setAction] = useState(props.action);
  const [watchError, setWatchError] = useState<string>();

  useEffect(() => {
    setAction(props.action);
    if (isFinished(props.action)) {
      props.onDone?.(props.action);
      return;
    }
    const controller = new AbortController();
    (async () => {
      try {
        for await (const update of api.actions.watchAction(
          { id: props.action.id },
          { signal: controller.signal },
        )) {
          setAction(update);
          if (isFinished(update)) {
            props.onDone?.(update);
            return;
          }
        }
      } catch (err) {
        if (!controller.signal.aborted) setWatchError(problem(err).message);
      }
    })();
    return () => controller.abort();
  }, [props.action.id]);

  const failed = action.state === ActionState.FAILED;
  const reached = (step: ActionState) =>
    action.transitions.some((t) => t.state === step) || action.state === step;
  return (
    <section
      class={`action-progress ${failed ? "failed" : ""}`}
      aria-labelledby={`action-${action.id}`}
      data-action-id={action.id}
    >
      <h3 id={`action-${action.id}`}>
        {ACTION_KIND[action.kind]}: <span class="action-state">{ACTION_STATE[action.state]}</span>
      </h3>
      <ol class="steps">
        {STEPS.map((step) => {
          const label = failed && step === ActionState.SUCCEEDED ? ActionState.FAILED : step;
          const done = reached(label);
          const t = action.transitions.find((x) => x.state === label);
          return (
            <li class={done ? "done" : ""} aria-current={action.state === label ? "step" : undefined}>
              {ACTION_STATE[label]}
              {t && (
                <time dateTime={isoWhen(t.time)} class="muted">
                  {" "}
                  {when(t.time)}
                </time>
              )}
            </li>
          );
        })}
      </ol>
      <p role="status" aria-live="polite" class="action-summary">
        {action.state === ActionState.SUCCEEDED && `${ACTION_KIND[action.kind]} succeeded.`}
        {failed && `${ACTION_KIND[action.kind]} failed.`}
        {!isFinished(action) && `${ACTION_KIND[action.kind]} is ${ACTION_STATE[action.state].toLowerCase()}…`}
      </p>
      {failed && (
        <p class="notice error" role="alert">
          Reason: {action.error || "the agent gave no reason"}
        </p>
      )}
      {watchError && <p class="notice error">Lost track of the action: {watchError}</p>}
    </section>
  );
}
