// The console's connection to the control plane: gRPC-web on the origin that served the page,
// with the session token of whoever signed in. The token lives in sessionStorage (this tab
// only) and is dropped as soon as the server stops accepting it.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { clients } from "./clients";

const TOKEN_KEY = "castplane.session";

export function sessionToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeSessionToken(token: string | null) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Fired when the server refuses the session (expired, signed out elsewhere, password reset). */
export const SESSION_ENDED = "castplane:session-ended";

const bearer: Interceptor = (next) => async (request) => {
  const token = sessionToken();
  if (token) request.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(request);
  } catch (err) {
    if (token && err instanceof ConnectError && err.code === Code.Unauthenticated) {
      storeSessionToken(null);
      window.dispatchEvent(new CustomEvent(SESSION_ENDED));
    }
    throw err;
  }
};

export const api = clients(
  createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [bearer] }),
);
