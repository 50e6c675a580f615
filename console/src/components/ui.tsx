// Small building blocks shared by the pages: labelled fields, error notices, paging.
import type { ComponentChildren } from "preact";
import type { Problem } from "../problem";

export function ErrorNotice({ problem }: { problem?: Problem }) {
  if (!problem) return null;
  return (
    <div class="notice error" role="alert">
      {problem.message}
    </div>
  );
}

export function fieldId(name: string): string {
  return `f-${name.replace(/[^a-z0-9]+/gi, "-")}`;
}

/**
 * A labelled input. `name` is the wire field path the server names in its errors, so a
 * refusal lands beside the field that caused it; the error is tied to the input for screen
 * readers with aria-describedby and aria-invalid.
 */
export function Field(props: {
  label: string;
  name: string;
  error?: string;
  hint?: ComponentChildren;
  children: (attrs: {
    id: string;
    name: string;
    "aria-invalid": boolean;
    "aria-describedby"?: string;
  }) => ComponentChildren;
}) {
  const id = fieldId(props.name);
  const described = [props.hint ? `${id}-hint` : "", props.error ? `${id}-error` : ""]
    .filter(Boolean)
    .join(" ");
  return (
    <div class={props.error ? "field invalid" : "field"}>
      <label for={id}>{props.label}</label>
      {props.children({
        id,
        name: props.name,
        "aria-invalid": Boolean(props.error),
        "aria-describedby": described || undefined,
      })}
      {props.hint && (
        <p class="hint" id={`${id}-hint`}>
          {props.hint}
        </p>
      )}
      {props.error && (
        <p class="field-error" id={`${id}-error`}>
          {props.error}
        </p>
      )}
    </div>
  );
}

/** Next/previous over opaque page tokens: the stack holds the tokens of pages already seen. */
export function Pager(props: {
  hasPrevious: boolean;
  nextToken: string;
  onPrevious: () => void;
  onNext: () => void;
  label: string;
}) {
  if (!props.hasPrevious && !props.nextToken) return null;
  return (
    <nav class="pager" aria-label={props.label}>
      <button type="button" onClick={props.onPrevious} disabled={!props.hasPrevious}>
        Previous page
      </button>
      <button type="button" onClick={props.onNext} disabled={!props.nextToken}>
        Next page
      </button>
    </nav>
  );
}

export function PageHeader(props: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-header">
      <h1 tabIndex={-1}>{props.title}</h1>
      {props.children && <div class="page-actions">{props.children}</div>}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" role="status">
      Loading {what}…
    </p>
  );
}
