// Turns an API error into what a person needs: a sentence, and for input errors the message
// to show beside each field (BadRequest field violations; quota refusals with what was asked
// and what is available, from the ErrorInfo the server attaches).
import { Code, ConnectError } from "@connectrpc/connect";
import { durationMs } from "@bufbuild/protobuf/wkt";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb";

export interface Quota {
  resource: string;
  asked: number;
  available: number;
}

export interface Problem {
  code: Code;
  /** One sentence for the top of the form or page. */
  message: string;
  /** Wire field path (e.g. "media_service.max_listeners") → what is wrong with it. */
  fields: Record<string, string>;
  quota?: Quota;
  retryAfterSeconds?: number;
}

/** The form field a quota resource is asked through, by wire field path. */
export const QUOTA_FIELDS: Record<string, string> = {
  listener_slots: "media_service.max_listeners",
  max_bitrate_kbps: "media_service.max_bitrate_kbps",
  disk_mb: "media_service.disk_quota_mb",
  bandwidth_gb_per_month: "media_service.bandwidth_gb_per_month",
};

export const RESOURCE_LABELS: Record<string, string> = {
  customers: "Customers",
  services: "Services",
  listener_slots: "Listener slots",
  max_bitrate_kbps: "Bitrate per service (kbps)",
  disk_mb: "Disk (MB)",
  bandwidth_gb_per_month: "Bandwidth (GB per month)",
};

const GENERIC: Partial<Record<Code, string>> = {
  [Code.Unavailable]: "The control plane cannot be reached right now. Try again in a moment.",
  [Code.DeadlineExceeded]: "The control plane took too long to answer. Try again.",
  [Code.Internal]: "Something went wrong on the server. Try again; if it persists, tell your provider.",
  [Code.Unknown]: "The request failed. Try again.",
};

export function quotaSentence(quota: Quota): string {
  const label = (RESOURCE_LABELS[quota.resource] ?? quota.resource).toLowerCase();
  return `Over your limit for ${label}: you asked for ${quota.asked}, ${quota.available} available.`;
}

export function problem(err: unknown): Problem {
  const e = ConnectError.from(err);
  const fields: Record<string, string> = {};
  for (const bad of e.findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) {
      fields[v.field] = fields[v.field] ? `${fields[v.field]}; ${v.description}` : v.description;
    }
  }
  let quota: Quota | undefined;
  let retryAfterSeconds: number | undefined;
  for (const info of e.findDetails(ErrorInfoSchema)) {
    if (info.reason === "QUOTA_EXCEEDED") {
      quota = {
        resource: info.metadata.resource ?? "",
        asked: Number(info.metadata.asked ?? 0),
        available: Number(info.metadata.available ?? 0),
      };
      const field = QUOTA_FIELDS[quota.resource];
      if (field) fields[field] = quotaSentence(quota);
    }
  }
  for (const retry of e.findDetails(RetryInfoSchema)) {
    if (retry.retryDelay) retryAfterSeconds = Math.ceil(durationMs(retry.retryDelay) / 1000);
  }
  let message = GENERIC[e.code] ?? e.rawMessage;
  if (Object.keys(fields).length > 0 && e.code === Code.InvalidArgument) {
    message = "Some fields need attention.";
  } else if (quota) {
    message = quotaSentence(quota);
  }
  if (!message) message = "The request failed.";
  return { code: e.code, message, fields, quota, retryAfterSeconds };
}

export function isNotFound(err: unknown): boolean {
  return ConnectError.from(err).code === Code.NotFound;
}
