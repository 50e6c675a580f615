// An account's console login, as whoever manages the account sees it: its email, whether it
// is locked, and a form to set email and password (which also lifts a lockout).
import { useState } from "preact/hooks";
import { api } from "../api";
import { useLoad } from "../hooks";
import { PrincipalKind } from "../gen/castplane/v1/accounts_pb";
import { isNotFound, problem, type Problem } from "../problem";
import { when } from "../format";
import { ErrorNotice, Field } from "./ui";

export function LoginCard(props: { kind: PrincipalKind; id: string; defaultEmail?: string }) {
  const login = useLoad(
    (signal) => api.logins.getLogin({ principalKind: props.kind, principalId: props.id }, { signal }),
    [props.kind, props.id],
  );
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<Problem>();
  const [saved, setSaved] = useState<string>();
  const missing = login.failure && isNotFound(login.failure);
  const current = login.data;
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setSaved(undefined);
    try {
      const updated = await api.logins.setLogin({
        principalKind: props.kind,
        principalId: props.id,
        email: email || current?.email || props.defaultEmail || "",
        password,
      });
      setPassword("");
      setSaved(`Saved. ${updated.email} can sign in with the new password.`);
      login.reload();
    } catch (err) {
      setError(problem(err));
    }
  };
  const idPrefix = `login-${props.id || "admin"}`;
  return (
    <section class="card" aria-labelledby={`${idPrefix}-title`}>
      <h2 id={`${idPrefix}-title`}>Console login</h2>
      {missing && <p class="muted">No login yet: set one so this account can sign in.</p>}
      {current && (
        <p>
          Signs in as <strong>{current.email}</strong>; password set {when(current.passwordUpdateTime)}.
          {current.lockExpireTime && (
            <span class="notice error"> Locked after failed sign-ins until {when(current.lockExpireTime)}.</span>
          )}
        </p>
      )}
      {login.error && !missing && <ErrorNotice problem={login.error} />}
      <form onSubmit={submit} noValidate>
        <Field label="Email" name="email" error={error?.fields.email}>
          {(attrs) => (
            <input
              {...attrs}
              id={`${idPrefix}-email`}
              type="email"
              autoComplete="off"
              placeholder={current?.email ?? props.defaultEmail}
              value={email}
              onInput={(e) => setEmail(e.currentTarget.value)}
            />
          )}
        </Field>
        <Field label="New password" name="password" error={error?.fields.password} hint="12 to 256 characters.">
          {(attrs) => (
            <input
              {...attrs}
              id={`${idPrefix}-password`}
              type="password"
              autoComplete="new-password"
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          )}
        </Field>
        <ErrorNotice problem={error && Object.keys(error.fields).length === 0 ? error : undefined} />
        {saved && (
          <p class="notice" role="status">
            {saved}
          </p>
        )}
        <button type="submit">{current ? "Set new password" : "Create login"}</button>
      </form>
    </section>
  );
}
