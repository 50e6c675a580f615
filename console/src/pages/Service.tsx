// A media service: status, listeners, ports, connection details (source password revealed on
// demand), a player, Start/Stop/Restart/Delete with live progress, ownership.
import { useEffect, useRef, useState } from "preact/hooks";
import { useRoute } from "preact-iso";
import { api } from "../api";
import { useInterval, useLoad } from "../hooks";
import { useSession } from "../session";
import type { Action } from "../gen/castplane/v1/actions_pb";
import { ActionKind, ActionState } from "../gen/castplane/v1/actions_pb";
import { ServiceKind } from "../gen/castplane/v1/common_pb";
import type { DeletionPlan, MediaService } from "../gen/castplane/v1/media_services_pb";
import { DESIRED_STATE, OBSERVED_STATE, SERVICE_TYPE, actor, isoWhen, when } from "../format";
import { isNotFound, problem, type Problem } from "../problem";
import { ErrorNotice, Field, Loading, PageHeader } from "../components/ui";
import { ActionProgress } from "../components/ActionProgress";
import { AudioPlayer, HlsPlayer } from "../components/Players";
import { RecentActions } from "../components/RecentActions";
import { MediaFiles } from "../components/MediaFiles";
import { VideoFileSchema } from "../gen/castplane/v1/media_pb";
import { NotFound } from "./NotFound";

export function ServicePage() {
  const { params } = useRoute();
  const id = params.id;
  const service = useLoad((signal) => api.services.getMediaService({ id }, { signal }), [id]);
  useInterval(service.reload, 3000);
  const [action, setAction] = useState<Action>();
  const [deleted, setDeleted] = useState(false);

  // Once its delete has succeeded the service answers NOT_FOUND; say what happened instead
  // (the poll may see that before the action's watch reports it).
  const gone =
    deleted ||
    (action?.kind === ActionKind.DELETE && Boolean(service.failure) && isNotFound(service.failure));
  if (gone && service.data) {
    return (
      <>
        <PageHeader title={service.data.displayName} />
        <p class="notice" role="status">
          {service.data.name} has been deleted. <a href="/services">Back to the services</a>.
        </p>
      </>
    );
  }
  if (service.failure && isNotFound(service.failure)) {
    return <NotFound what="media service" />;
  }
  if (!service.data) {
    return service.error ? <ErrorNotice problem={service.error} /> : <Loading what="the service" />;
  }
  const s = service.data;
  return (
    <>
      <PageHeader title={s.displayName}>
        <span class="muted">
          {s.name} · {SERVICE_TYPE[s.type]}
        </span>
      </PageHeader>
      <div class="grid">
        <StatusCard service={s} />
        <ActionsCard
          service={s}
          action={action}
          onAction={setAction}
          onDone={(done) => {
            service.reload();
            if (done.kind === ActionKind.DELETE && done.state === ActionState.SUCCEEDED) setDeleted(true);
          }}
        />
        <ConnectionCard service={s} />
        <OwnershipCard service={s} onChanged={service.reload} />
        {s.kind === ServiceKind.VIDEO && <VideoFilesCard service={s} />}
        <section class="card wide" aria-labelledby="svc-actions-title">
          <h2 id="svc-actions-title">Action history</h2>
          <RecentActions mediaServiceId={s.id} pageSize={20} />
        </section>
      </div>
    </>
  );
}

function StatusCard({ service: s }: { service: MediaService }) {
  const stats = s.status?.stats;
  return (
    <section class="card" aria-labelledby="status-title">
      <h2 id="status-title">Status</h2>
      <dl class="facts">
        <dt>State</dt>
        <dd data-testid="observed-state">
          {s.deleting ? "being deleted" : OBSERVED_STATE[s.status?.state ?? 0]}
          {s.status?.message && <span class="muted"> — {s.status.message}</span>}
        </dd>
        <dt>Should be</dt>
        <dd>{DESIRED_STATE[s.desiredState]}</dd>
        <dt>Listeners</dt>
        <dd>
          {stats?.listeners ?? 0} of {s.maxListeners}
        </dd>
        <dt>Sources</dt>
        <dd>{stats?.sources ?? 0}</dd>
        <dt>Ports</dt>
        <dd>{s.ports.map((p) => `${p.port} (${p.purpose})`).join(", ") || "—"}</dd>
        <dt>Max bitrate</dt>
        <dd>{s.maxBitrateKbps} kbps</dd>
        <dt>Disk quota</dt>
        <dd>{String(s.diskQuotaMb)} MB</dd>
        <dt>Bandwidth</dt>
        <dd>{String(s.bandwidthGbPerMonth)} GB per month</dd>
        {s.kind === ServiceKind.AUDIO && (
          <>
            <dt>AutoDJ</dt>
            <dd>{s.autodj ? "on" : "off"}</dd>
          </>
        )}
        <dt>Last report</dt>
        <dd>
          <time dateTime={isoWhen(s.status?.observeTime)}>{when(s.status?.observeTime)}</time>
        </dd>
      </dl>
    </section>
  );
}

function ActionsCard(props: {
  service: MediaService;
  action?: Action;
  onAction: (a: Action) => void;
  onDone: (a: Action) => void;
}) {
  const s = props.service;
  const session = useSession();
  const [error, setError] = useState<Problem>();
  const [busy, setBusy] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const run = async (call: () => Promise<Action>) => {
    setBusy(true);
    setError(undefined);
    try {
      props.onAction(await call());
    } catch (err) {
      setError(problem(err));
    } finally {
      setBusy(false);
    }
  };
  const disabled = busy || s.deleting;
  return (
    <section class="card" aria-labelledby="control-title">
      <h2 id="control-title">Control</h2>
      <div class="button-row">
        <button type="button" disabled={disabled} onClick={() => run(() => api.services.startMediaService({ id: s.id }))}>
          Start
        </button>
        <button type="button" disabled={disabled} onClick={() => run(() => api.services.stopMediaService({ id: s.id }))}>
          Stop
        </button>
        <button type="button" disabled={disabled} onClick={() => run(() => api.services.restartMediaService({ id: s.id }))}>
          Restart
        </button>
        {!session.isCustomer && (
          <button type="button" class="danger" disabled={disabled} onClick={() => setDeleting(true)}>
            Delete
          </button>
        )}
      </div>
      <ErrorNotice problem={error} />
      {props.action && <ActionProgress action={props.action} onDone={props.onDone} />}
      {deleting && (
        <DeleteDialog
          service={s}
          onClose={() => setDeleting(false)}
          onQueued={(a) => {
            setDeleting(false);
            props.onAction(a);
          }}
        />
      )}
    </section>
  );
}

/**
 * Deletion: the dry-run plan (what is kept, what is destroyed) first; a video service, whose
 * files are destroyed for good, also needs its name typed before the Delete button works.
 */
function DeleteDialog(props: { service: MediaService; onClose: () => void; onQueued: (a: Action) => void }) {
  const s = props.service;
  const dialog = useRef<HTMLDialogElement>(null);
  const [plan, setPlan] = useState<DeletionPlan>();
  const [typed, setTyped] = useState("");
  const [error, setError] = useState<Problem>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    dialog.current?.showModal();
    api.services
      .deleteMediaService({ id: s.id, validateOnly: true })
      .then((r) => setPlan(r.plan))
      .catch((err) => setError(problem(err)));
  }, [s.id]);
  const needsConfirmation = plan?.requiresConfirmation ?? false;
  const confirmed = !needsConfirmation || typed === s.name;
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!confirmed) return;
    setBusy(true);
    try {
      const r = await api.services.deleteMediaService({
        id: s.id,
        confirmPermanentDeletion: needsConfirmation,
      });
      if (r.action) props.onQueued(r.action);
    } catch (err) {
      setError(problem(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={dialog} aria-labelledby="delete-title" onClose={props.onClose} class="dialog">
      <form onSubmit={submit}>
        <h2 id="delete-title">Delete {s.name}?</h2>
        <ErrorNotice problem={error} />
        {!plan && !error && <Loading what="what the deletion does" />}
        {plan && (
          <>
            <h3>Destroyed</h3>
            <ul class="plan-destroyed">
              {plan.destroyed.map((d) => (
                <li>{d}</li>
              ))}
            </ul>
            <h3>Kept</h3>
            <ul class="plan-kept">
              {plan.kept.map((k) => (
                <li>{k}</li>
              ))}
            </ul>
          </>
        )}
        {needsConfirmation && (
          <Field
            label={`Type ${s.name} to confirm permanent deletion`}
            name="confirm_permanent_deletion"
            hint="Uploaded video files and the HLS output are deleted for good. This cannot be undone."
          >
            {(attrs) => (
              <input
                {...attrs}
                autoComplete="off"
                spellcheck={false}
                value={typed}
                onInput={(e) => setTyped(e.currentTarget.value)}
              />
            )}
          </Field>
        )}
        <div class="button-row">
          <button type="submit" class="danger" disabled={!plan || !confirmed || busy}>
            {needsConfirmation ? "Delete permanently" : "Delete"}
          </button>
          <button type="button" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** A video service's on-demand files: they belong to the service and go with it. */
function VideoFilesCard({ service: s }: { service: MediaService }) {
  return (
    <section class="card wide" aria-labelledby="video-files-title">
      <h2 id="video-files-title">Video files</h2>
      <p class="muted">
        Served over HTTP from the service's port once its node has them; they count against its disk quota of{" "}
        {String(s.diskQuotaMb)} MB.
      </p>
      <MediaFiles
        noun="video file"
        accept="video/*,.mp4,.m4v,.mov,.mkv,.webm"
        uploadPath={`/uploads/v1/services/${encodeURIComponent(s.id)}/videos`}
        schema={VideoFileSchema}
        list={async (pageToken, signal) => {
          const r = await api.library.listVideoFiles({ mediaServiceId: s.id, pageToken, pageSize: 50 }, { signal });
          return { files: r.videoFiles, nextPageToken: r.nextPageToken };
        }}
        remove={async (id) => {
          await api.library.deleteVideoFile({ id });
        }}
        deleteWarning="The file is deleted from the store and from the service's node."
        disabled={s.deleting}
      />
    </section>
  );
}

function ConnectionCard({ service: s }: { service: MediaService }) {
  const info = useLoad(
    (signal) => api.services.getMediaServiceConnectionInfo({ id: s.id }, { signal }),
    [s.id, s.customerId],
  );
  const [reveal, setReveal] = useState(false);
  const c = info.data;
  const hidden = "••••••••••••";
  const video = s.kind === ServiceKind.VIDEO;
  return (
    <section class="card" aria-labelledby="connection-title">
      <h2 id="connection-title">Connection</h2>
      <ErrorNotice problem={info.error} />
      {!c && !info.error && <Loading what="connection details" />}
      {c && (
        <>
          <dl class="facts">
            <dt>{video ? "HLS playlist" : "Stream URL"}</dt>
            <dd>
              <a href={c.streamUrl} rel="noreferrer">
                {c.streamUrl}
              </a>
            </dd>
            {video ? (
              <>
                <dt>RTMP ingest URL</dt>
                <dd>
                  <code>{reveal ? c.ingestUrl : c.ingestUrl.replace(c.sourcePassword, hidden)}</code>
                </dd>
              </>
            ) : (
              <>
                <dt>Source host</dt>
                <dd>
                  <code>{c.sourceHost}</code>
                </dd>
                <dt>Source port</dt>
                <dd>
                  <code>{c.sourcePort}</code>
                </dd>
                <dt>Mount</dt>
                <dd>
                  <code>{c.mount}</code>
                </dd>
                {c.sourceUsername && (
                  <>
                    <dt>Source username</dt>
                    <dd>
                      <code>{c.sourceUsername}</code>
                    </dd>
                  </>
                )}
              </>
            )}
            <dt>Source password</dt>
            <dd>
              <code data-testid="source-password">{reveal ? c.sourcePassword : hidden}</code>{" "}
              <button type="button" class="small" aria-pressed={reveal} onClick={() => setReveal(!reveal)}>
                {reveal ? "Hide password" : "Reveal password"}
              </button>
            </dd>
          </dl>
          {video ? (
            <HlsPlayer url={c.streamUrl} name={s.displayName} />
          ) : (
            <AudioPlayer url={c.streamUrl} name={s.displayName} />
          )}
        </>
      )}
    </section>
  );
}

function OwnershipCard({ service: s, onChanged }: { service: MediaService; onChanged: () => void }) {
  const session = useSession();
  const history = useLoad(
    (signal) => api.services.listOwnershipChanges({ mediaServiceId: s.id }, { signal }),
    [s.id, s.customerId],
  );
  const choices = useLoad(
    (signal) =>
      session.isCustomer
        ? Promise.resolve(undefined)
        : api.accounts.listCustomerChoices({ resellerId: session.isAdmin ? s.resellerId : "" }, { signal }),
    [s.resellerId],
  );
  const [target, setTarget] = useState("");
  const [error, setError] = useState<Problem>();
  const [done, setDone] = useState<string>();
  const owner = choices.data?.choices.find((c) => c.customerId === s.customerId);
  const change = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setDone(undefined);
    try {
      await api.services.changeMediaServiceOwner({ id: s.id, newCustomerId: target });
      const name = choices.data?.choices.find((c) => c.customerId === target)?.displayName ?? target;
      setDone(`${s.name} now belongs to ${name}.`);
      setTarget("");
      onChanged();
      history.reload();
    } catch (err) {
      setError(problem(err));
    }
  };
  const name = (id: string) =>
    id ? (choices.data?.choices.find((c) => c.customerId === id)?.displayName ?? id) : "another account";
  return (
    <section class="card" aria-labelledby="owner-title">
      <h2 id="owner-title">Owner</h2>
      <p>
        Belongs to{" "}
        {session.isCustomer ? (
          "you"
        ) : (
          <a href={`/customers/${s.customerId}`}>{owner?.displayName ?? s.customerId}</a>
        )}
        {owner && <span class="muted"> ({owner.label})</span>}.
      </p>
      {!session.isCustomer && choices.data && (
        <form onSubmit={change} class="inline-form">
          <label for="new-owner">Change owner to</label>
          <select id="new-owner" value={target} onChange={(e) => setTarget(e.currentTarget.value)} required>
            <option value="">Choose a customer…</option>
            {choices.data.choices
              .filter((c) => c.customerId !== s.customerId)
              .map((c) => (
                <option value={c.customerId}>
                  {c.displayName} — {c.label}
                </option>
              ))}
          </select>
          <button type="submit" disabled={!target || s.deleting}>
            Change owner
          </button>
        </form>
      )}
      <ErrorNotice problem={error} />
      {done && (
        <p class="notice" role="status">
          {done}
        </p>
      )}
      <h3>Ownership history</h3>
      {history.data?.changes.length === 0 && <p class="muted">Never changed hands.</p>}
      {!!history.data?.changes.length && (
        <ol class="history">
          {history.data.changes.map((c) => (
            <li>
              <time dateTime={isoWhen(c.changeTime)}>{when(c.changeTime)}</time>: from {name(c.fromCustomerId)} to{" "}
              {name(c.toCustomerId)}, by {actor(c.changedBy)}
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
