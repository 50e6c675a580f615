// Uploads a file through the control plane's upload endpoint (control-plane/src/uploads.rs).
// A browser cannot stream a request over gRPC-web, so the file goes as the body of one POST,
// with the session token as its bearer (as every API call), and with the file's SHA-256 so
// that the server can verify every byte. crypto.subtle only hashes a whole buffer at once,
// which would hold a video file in memory: the hash is computed here, slice by slice.
import { createRegistry, fromJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { SESSION_ENDED, sessionToken, storeSessionToken } from "./api";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb";

/** How much of the file is read (and held) at once while hashing. */
const HASH_SLICE_BYTES = 4 << 20;

export type UploadPhase = "hashing" | "sending" | "processing";

export interface UploadProgress {
  phase: UploadPhase;
  /** 0–100: of the file hashed while hashing, of the file sent after. */
  percent: number;
}

export async function sha256Hex(
  file: Blob,
  onProgress: (percent: number) => void,
  signal: AbortSignal,
): Promise<string> {
  const hash = sha256.create();
  for (let offset = 0; offset < file.size; offset += HASH_SLICE_BYTES) {
    if (signal.aborted) throw new ConnectError("upload cancelled", Code.Canceled);
    const slice = await file.slice(offset, offset + HASH_SLICE_BYTES).arrayBuffer();
    hash.update(new Uint8Array(slice));
    onProgress(Math.floor((Math.min(offset + HASH_SLICE_BYTES, file.size) / file.size) * 100));
  }
  return bytesToHex(hash.digest());
}

/** The server's names of the gRPC codes (uploads.rs), as connect-web's codes. */
const CODES: Record<string, Code> = {
  CANCELLED: Code.Canceled,
  UNKNOWN: Code.Unknown,
  INVALID_ARGUMENT: Code.InvalidArgument,
  DEADLINE_EXCEEDED: Code.DeadlineExceeded,
  NOT_FOUND: Code.NotFound,
  ALREADY_EXISTS: Code.AlreadyExists,
  PERMISSION_DENIED: Code.PermissionDenied,
  RESOURCE_EXHAUSTED: Code.ResourceExhausted,
  FAILED_PRECONDITION: Code.FailedPrecondition,
  ABORTED: Code.Aborted,
  OUT_OF_RANGE: Code.OutOfRange,
  UNIMPLEMENTED: Code.Unimplemented,
  INTERNAL: Code.Internal,
  UNAVAILABLE: Code.Unavailable,
  DATA_LOSS: Code.DataLoss,
  UNAUTHENTICATED: Code.Unauthenticated,
};

const DETAILS = createRegistry(
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
);

/**
 * The endpoint's JSON refusal as the ConnectError a gRPC-web call would have raised, details
 * included, so that problem() words both the same way.
 */
export function uploadError(httpStatus: number, text: string): ConnectError {
  let body: { code?: unknown; message?: unknown; details?: unknown } | undefined;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!body || typeof body.code !== "string") {
    return new ConnectError(
      `the server answered HTTP ${httpStatus}`,
      httpStatus >= 500 || httpStatus === 0 ? Code.Unavailable : Code.Unknown,
    );
  }
  const error = new ConnectError(String(body.message ?? ""), CODES[body.code] ?? Code.Unknown);
  for (const detail of Array.isArray(body.details) ? body.details : []) {
    try {
      const any = fromJson(AnySchema, detail, { registry: DETAILS });
      error.details.push({ type: any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1), value: any.value });
    } catch {
      // A detail of a type this console does not know: the message still says it all.
    }
  }
  return error;
}

/**
 * POSTs `file` to `path` (an /uploads/v1/… route) and answers the stored message, reporting
 * the hashing, then the sending (XMLHttpRequest's upload progress), then the server's checks.
 */
export async function uploadFile<Desc extends DescMessage>(
  path: string,
  file: File,
  schema: Desc,
  onProgress: (progress: UploadProgress) => void,
  signal: AbortSignal,
): Promise<MessageShape<Desc>> {
  onProgress({ phase: "hashing", percent: 0 });
  const digest = await sha256Hex(file, (percent) => onProgress({ phase: "hashing", percent }), signal);
  const query = new URLSearchParams({ file_name: file.name, sha256: digest });
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${path}?${query}`);
    const token = sessionToken();
    // A header, never a cookie: another site's page cannot make the browser send it.
    if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.responseType = "text";
    onProgress({ phase: "sending", percent: 0 });
    xhr.upload.onprogress = (event) => {
      const total = event.lengthComputable ? event.total : file.size;
      if (total > 0) onProgress({ phase: "sending", percent: Math.floor((event.loaded / total) * 100) });
    };
    // Every byte is sent; the server hashes, probes and stores it before it answers.
    xhr.upload.onload = () => onProgress({ phase: "processing", percent: 100 });
    xhr.onload = () => {
      if (xhr.status === 201) {
        try {
          resolve(fromJson(schema, JSON.parse(xhr.responseText)));
        } catch (err) {
          reject(ConnectError.from(err, Code.Internal));
        }
        return;
      }
      const error = uploadError(xhr.status, xhr.responseText);
      if (token && error.code === Code.Unauthenticated) {
        storeSessionToken(null);
        window.dispatchEvent(new CustomEvent(SESSION_ENDED));
      }
      reject(error);
    };
    xhr.onerror = () =>
      reject(new ConnectError("the connection was lost during the upload; nothing was kept, try again", Code.Unavailable));
    xhr.onabort = () => reject(new ConnectError("upload cancelled", Code.Canceled));
    signal.addEventListener("abort", () => xhr.abort(), { once: true });
    xhr.send(file);
  });
}
