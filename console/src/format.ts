// How the console words the API's enums and values.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ActionKind, ActionState } from "./gen/castplane/v1/actions_pb";
import { ServiceType } from "./gen/castplane/v1/common_pb";
import { ObservedState, DesiredState } from "./gen/castplane/v1/media_services_pb";
import { NodeStatus } from "./gen/castplane/v1/nodes_pb";
import { Resource } from "./gen/castplane/v1/catalog_pb";

export const SERVICE_TYPE: Record<ServiceType, string> = {
  [ServiceType.UNSPECIFIED]: "unknown",
  [ServiceType.ICECAST]: "Icecast",
  [ServiceType.SHOUTCAST]: "SHOUTcast",
  [ServiceType.VIDEO]: "Video",
};

export const ACTION_KIND: Record<ActionKind, string> = {
  [ActionKind.UNSPECIFIED]: "action",
  [ActionKind.START]: "Start",
  [ActionKind.STOP]: "Stop",
  [ActionKind.RESTART]: "Restart",
  [ActionKind.DELETE]: "Delete",
};

/** As the API names them, so what the console says matches castctl and the docs. */
export const ACTION_STATE: Record<ActionState, string> = {
  [ActionState.UNSPECIFIED]: "UNKNOWN",
  [ActionState.QUEUED]: "QUEUED",
  [ActionState.DISPATCHED]: "DISPATCHED",
  [ActionState.RUNNING]: "RUNNING",
  [ActionState.SUCCEEDED]: "SUCCEEDED",
  [ActionState.FAILED]: "FAILED",
};

export const OBSERVED_STATE: Record<ObservedState, string> = {
  [ObservedState.UNSPECIFIED]: "unknown",
  [ObservedState.UNKNOWN]: "not reported yet",
  [ObservedState.STOPPED]: "stopped",
  [ObservedState.STARTING]: "starting",
  [ObservedState.RUNNING]: "running",
  [ObservedState.BACKING_OFF]: "restarting after a crash",
  [ObservedState.FAILED]: "failed",
};

export const DESIRED_STATE: Record<DesiredState, string> = {
  [DesiredState.UNSPECIFIED]: "—",
  [DesiredState.RUNNING]: "running",
  [DesiredState.STOPPED]: "stopped",
};

export const NODE_STATUS: Record<NodeStatus, string> = {
  [NodeStatus.UNSPECIFIED]: "unknown",
  [NodeStatus.PENDING_JOIN]: "waiting for its agent to join",
  [NodeStatus.ONLINE]: "online",
  [NodeStatus.UNREACHABLE]: "unreachable",
};

/** Resource enum → the name the server uses in quota errors. */
export const RESOURCE_NAME: Record<Resource, string> = {
  [Resource.UNSPECIFIED]: "",
  [Resource.CUSTOMERS]: "customers",
  [Resource.SERVICES]: "services",
  [Resource.LISTENER_SLOTS]: "listener_slots",
  [Resource.MAX_BITRATE_KBPS]: "max_bitrate_kbps",
  [Resource.DISK_MB]: "disk_mb",
  [Resource.BANDWIDTH_GB_PER_MONTH]: "bandwidth_gb_per_month",
};

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function when(ts: Timestamp | undefined): string {
  return ts ? dateTime.format(timestampDate(ts)) : "—";
}

export function isoWhen(ts: Timestamp | undefined): string | undefined {
  return ts ? timestampDate(ts).toISOString() : undefined;
}

/** "reseller:rsl_…" → "reseller rsl_…" */
export function actor(name: string): string {
  return name.replace(":", " ");
}

/** 1 MB = 1,048,576 bytes, as the disk quota counts them. */
const MB = 1 << 20;

/** A size in bytes as people read it: "820 KB", "3.4 MB", "1.2 GB". */
export function size(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < 1024) return `${n} bytes`;
  if (n < MB) return `${Math.round(n / 1024)} KB`;
  if (n < 1024 * MB) return `${(n / MB).toFixed(1)} MB`;
  return `${(n / (1024 * MB)).toFixed(1)} GB`;
}

/**
 * ffprobe's name of a file's format, which for some families lists all its members
 * ("mov,mp4,m4a,3gp,3g2,mj2"): the one the file's name says if it is among them.
 */
export function formatName(format: string, fileName: string): string {
  const names = format.split(",");
  const extension = fileName.slice(fileName.lastIndexOf(".") + 1).toLowerCase();
  return names.includes(extension) ? extension : names[0];
}

/** Seconds as "m:ss" (or "h:mm:ss"). */
export function duration(seconds: number): string {
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Bits per second as "128 kbps". */
export function bitrate(bitsPerSecond: bigint | number): string {
  return `${Math.round(Number(bitsPerSecond) / 1000)} kbps`;
}
