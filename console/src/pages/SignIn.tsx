import { useState } from "preact/hooks";
import type { Caller } from "../gen/castplane/v1/accounts_pb";
import { api, storeSessionToken } from "../api";
import { problem, type Problem } from "../problem";
import { ErrorNotice, Field } from "../components/ui";

export function SignIn(props: { onSignedIn: (caller: Caller) => void; notice?: string }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Problem>();

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const session = await api.sessions.createSession({ email, password });
      storeSessionToken(session.token);
      document.title = "castplane console";
      props.onSignedIn(session.caller!);
    } catch (err) {
      setError(problem(err));
      setPassword("");
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin" id="main">
      <form onSubmit={submit} aria-labelledby="signin-title" noValidate>
        <h1 id="signin-title">Sign in to castplane</h1>
        {props.notice && (
          <p class="notice" role="status">
            {props.notice}
          </p>
        )}
        <ErrorNotice problem={error} />
        <Field label="Email" name="email" error={error?.fields.email}>
          {(attrs) => (
            <input
              {...attrs}
              type="email"
              autoComplete="username"
              required
              value={email}
              onInput={(e) => setEmail(e.currentTarget.value)}
            />
          )}
        </Field>
        <Field label="Password" name="password" error={error?.fields.password}>
          {(attrs) => (
            <input
              {...attrs}
              type="password"
              autoComplete="current-password"
              required
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          )}
        </Field>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <p class="hint">
          Your login is set by whoever manages your account. Programs use API tokens instead.
        </p>
      </form>
    </main>
  );
}
