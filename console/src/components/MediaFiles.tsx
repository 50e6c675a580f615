// Uploaded files — a customer's tracks, a video service's files — listed with what ffprobe
// found in them, uploaded one or several at a time with a progress bar each, and deleted
// after a confirmation. A refusal for the disk quota is shown beside the upload control with
// what the file asked and what is available.
import { useEffect, useRef, useState } from "preact/hooks";
import type { DescMessage } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { useLoad } from "../hooks";
import { problem, type Problem } from "../problem";
import { bitrate, duration, formatName, size } from "../format";
import { uploadFile, type UploadProgress } from "../upload";
import { ErrorNotice, Field, Loading, Pager } from "./ui";

export interface StoredFile {
  id: string;
  displayName: string;
  format: string;
  codec: string;
  durationSeconds: number;
  bitRate: bigint;
  sizeBytes: bigint;
  /** Where viewers fetch a video file. */
  url?: string;
}

export interface FilePage {
  files: StoredFile[];
  nextPageToken: string;
}

interface Upload {
  key: number;
  name: string;
  progress: UploadProgress;
  state: "active" | "done" | "failed";
  message?: string;
  controller: AbortController;
}

const PHASE: Record<UploadProgress["phase"], string> = {
  hashing: "Reading the file",
  sending: "Uploading",
  processing: "Checking on the server",
};

/** What a refused upload tells the person, and the quota sentence for beside the control. */
function refusal(name: string, err: unknown): { message: string; quota?: string; detail?: string } {
  const p: Problem = problem(err);
  const raw = ConnectError.from(err).rawMessage;
  if (p.quota) {
    const quota = `Not enough disk space for ${name}: you asked for ${size(p.quota.asked)}, ${size(p.quota.available)} available.`;
    return { message: quota, quota, detail: raw };
  }
  const fields = Object.values(p.fields);
  return { message: fields.length > 0 ? fields.join("; ") : p.message };
}

export function MediaFiles(props: {
  /** "track" or "video file", for the words on buttons and in messages. */
  noun: string;
  /** The file chooser's filter: "audio/*" or "video/*". */
  accept: string;
  /** The /uploads/v1/… route files go to. */
  uploadPath: string;
  /** The message the endpoint answers with (MediaTrack, VideoFile). */
  schema: DescMessage;
  list: (pageToken: string, signal: AbortSignal) => Promise<FilePage>;
  remove: (id: string) => Promise<void>;
  /** What deleting one destroys, in the confirmation. */
  deleteWarning: string;
  disabled?: boolean;
}) {
  const [tokens, setTokens] = useState<string[]>([""]);
  const pageToken = tokens[tokens.length - 1];
  const page = useLoad((signal) => props.list(pageToken, signal), [pageToken, props.uploadPath]);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [quota, setQuota] = useState<{ sentence: string; detail?: string }>();
  const [deleting, setDeleting] = useState<StoredFile>();
  const [notice, setNotice] = useState<string>();
  const queue = useRef<Promise<void>>(Promise.resolve());
  const nextKey = useRef(0);
  const input = useRef<HTMLInputElement>(null);

  const update = (key: number, change: Partial<Upload>) =>
    setUploads((all) => all.map((u) => (u.key === key ? { ...u, ...change } : u)));

  // Files go one after another: each holds the connection's bandwidth, and a quota refusal
  // of one is known before the next is sent.
  const choose = (files: FileList | null) => {
    if (!files || files.length === 0) return;
    setQuota(undefined);
    setNotice(undefined);
    for (const file of Array.from(files)) {
      const key = nextKey.current++;
      const controller = new AbortController();
      setUploads((all) => [
        ...all,
        { key, name: file.name, progress: { phase: "hashing", percent: 0 }, state: "active", controller },
      ]);
      queue.current = queue.current.then(async () => {
        if (controller.signal.aborted) {
          update(key, { state: "failed", message: "Cancelled." });
          return;
        }
        try {
          await uploadFile(props.uploadPath, file, props.schema, (progress) => update(key, { progress }), controller.signal);
          update(key, { state: "done", progress: { phase: "processing", percent: 100 }, message: "Uploaded." });
          page.reload();
        } catch (err) {
          const why = refusal(file.name, err);
          if (why.quota) setQuota({ sentence: why.quota, detail: why.detail });
          update(key, { state: "failed", message: why.message });
        }
      });
    }
    if (input.current) input.current.value = "";
  };

  const files = page.data?.files ?? [];
  const withDuration = props.noun === "track" || files.some((f) => f.durationSeconds > 0);
  return (
    <>
      <Field
        label={`Upload ${props.noun}s`}
        name="upload-files"
        error={quota?.sentence}
        hint={quota?.detail ?? `Choose one or several files. Each counts against the disk quota.`}
      >
        {(attrs) => (
          <input
            {...attrs}
            ref={input}
            type="file"
            multiple
            accept={props.accept}
            disabled={props.disabled}
            onChange={(e) => choose(e.currentTarget.files)}
          />
        )}
      </Field>
      {uploads.length > 0 && (
        <ul class="uploads" aria-label="Uploads" aria-live="polite">
          {uploads.map((u) => (
            <li class={`upload upload-${u.state}`} data-file={u.name}>
              <span class="upload-name">{u.name}</span>
              <progress
                max={100}
                value={u.progress.phase === "hashing" ? 0 : u.progress.percent}
                aria-label={`Upload of ${u.name}`}
              />
              <span class="upload-percent">{u.progress.phase === "hashing" ? 0 : u.progress.percent} %</span>
              <span class="upload-status">
                {u.state === "active" && `${PHASE[u.progress.phase]}…`}
                {u.state !== "active" && u.message}
              </span>
              {u.state === "active" && (
                <button type="button" class="small" onClick={() => u.controller.abort()}>
                  Cancel<span class="visually-hidden"> the upload of {u.name}</span>
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      <ErrorNotice problem={page.error} />
      {notice && (
        <p class="notice" role="status">
          {notice}
        </p>
      )}
      {!page.data && !page.error && <Loading what={`${props.noun}s`} />}
      {page.data && files.length === 0 && <p class="muted">No {props.noun}s yet.</p>}
      {files.length > 0 && (
        <div class="table-wrap">
          <table class="media-files">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Format</th>
                {withDuration && <th scope="col">Duration</th>}
                <th scope="col">Bitrate</th>
                <th scope="col">Size</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {files.map((f) => (
                <tr data-id={f.id}>
                  <td>
                    {f.url ? (
                      <a href={f.url} rel="noreferrer">
                        {f.displayName}
                      </a>
                    ) : (
                      f.displayName
                    )}
                  </td>
                  <td>
                    {formatName(f.format, f.displayName)}
                    {f.codec && f.codec !== formatName(f.format, f.displayName) && <span class="muted"> ({f.codec})</span>}
                  </td>
                  {withDuration && <td class="duration">{duration(f.durationSeconds)}</td>}
                  <td>{bitrate(f.bitRate)}</td>
                  <td>{size(f.sizeBytes)}</td>
                  <td>
                    <button type="button" class="small danger" disabled={props.disabled} onClick={() => setDeleting(f)}>
                      Delete<span class="visually-hidden"> {f.displayName}</span>
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        label={`Pages of ${props.noun}s`}
        hasPrevious={tokens.length > 1}
        nextToken={page.data?.nextPageToken ?? ""}
        onPrevious={() => setTokens(tokens.slice(0, -1))}
        onNext={() => page.data && setTokens([...tokens, page.data.nextPageToken])}
      />
      {deleting && (
        <ConfirmDelete
          file={deleting}
          noun={props.noun}
          warning={props.deleteWarning}
          remove={props.remove}
          onClose={() => setDeleting(undefined)}
          onDeleted={() => {
            setNotice(`${deleting.displayName} has been deleted.`);
            setDeleting(undefined);
            page.reload();
          }}
        />
      )}
    </>
  );
}

function ConfirmDelete(props: {
  file: StoredFile;
  noun: string;
  warning: string;
  remove: (id: string) => Promise<void>;
  onClose: () => void;
  onDeleted: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [error, setError] = useState<Problem>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await props.remove(props.file.id);
      props.onDeleted();
    } catch (err) {
      setError(problem(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <dialog ref={dialog} aria-labelledby="delete-file-title" onClose={props.onClose} class="dialog">
      <form onSubmit={submit}>
        <h2 id="delete-file-title">Delete {props.file.displayName}?</h2>
        <p>{props.warning} This cannot be undone.</p>
        <ErrorNotice problem={error} />
        <div class="button-row">
          <button type="submit" class="danger" disabled={busy}>
            Delete {props.noun}
          </button>
          <button type="button" onClick={() => dialog.current?.close()}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}
