// Who is signed in. The token is in sessionStorage; the caller is read back from the server
// (GetCaller) on every page load, so a stale or revoked token goes straight to sign-in.
import { createContext, type ComponentChildren } from "preact";
import { useContext, useEffect, useState } from "preact/hooks";
import type { Caller } from "./gen/castplane/v1/accounts_pb";
import { PrincipalKind } from "./gen/castplane/v1/accounts_pb";
import { api, SESSION_ENDED, sessionToken, storeSessionToken } from "./api";

export interface Session {
  caller: Caller;
  isAdmin: boolean;
  isReseller: boolean;
  isCustomer: boolean;
  signOut: () => Promise<void>;
}

const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside a signed-in page");
  return session;
}

type State =
  | { kind: "checking" }
  | { kind: "signed-out"; notice?: string }
  | { kind: "signed-in"; caller: Caller };

export function SessionGate(props: {
  signIn: (onSignedIn: (caller: Caller) => void, notice?: string) => ComponentChildren;
  children: ComponentChildren;
}) {
  const [state, setState] = useState<State>(() =>
    sessionToken() ? { kind: "checking" } : { kind: "signed-out" },
  );

  useEffect(() => {
    const ended = () =>
      setState({ kind: "signed-out", notice: "Your session has ended. Sign in again to continue." });
    window.addEventListener(SESSION_ENDED, ended);
    return () => window.removeEventListener(SESSION_ENDED, ended);
  }, []);

  useEffect(() => {
    if (state.kind !== "checking") return;
    api.accounts
      .getCaller({})
      .then((caller) => setState({ kind: "signed-in", caller }))
      .catch(() => {
        storeSessionToken(null);
        setState({ kind: "signed-out" });
      });
  }, [state.kind]);

  if (state.kind === "checking") {
    return <p class="loading" role="status">Loading…</p>;
  }
  if (state.kind === "signed-out") {
    return <>{props.signIn((caller) => setState({ kind: "signed-in", caller }), state.notice)}</>;
  }
  const caller = state.caller;
  const session: Session = {
    caller,
    isAdmin: caller.principalKind === PrincipalKind.ADMIN,
    isReseller: caller.principalKind === PrincipalKind.RESELLER,
    isCustomer: caller.principalKind === PrincipalKind.CUSTOMER,
    signOut: async () => {
      try {
        await api.sessions.deleteSession({});
      } catch {
        // Signed out locally either way; an expired session has nothing left to end.
      }
      storeSessionToken(null);
      setState({ kind: "signed-out", notice: "You have signed out." });
    },
  };
  return <SessionContext.Provider value={session}>{props.children}</SessionContext.Provider>;
}
