// The signed-in person's own account: who they are, and changing their password.
import { useState } from "preact/hooks";
import { api } from "../api";
import { useSession } from "../session";
import { problem, type Problem } from "../problem";
import { ErrorNotice, Field, PageHeader } from "../components/ui";
import { LoginCard } from "../components/LoginCard";
import { PrincipalKind } from "../gen/castplane/v1/accounts_pb";

export function Account() {
  const session = useSession();
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [error, setError] = useState<Problem>();
  const [saved, setSaved] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setSaved(false);
    try {
      await api.logins.changePassword({ currentPassword: current, newPassword: next });
      setCurrent("");
      setNext("");
      setSaved(true);
    } catch (err) {
      setError(problem(err));
    }
  };
  return (
    <>
      <PageHeader title="Your account" />
      <p class="lede">Signed in as {session.caller.displayName}.</p>
      <div class="grid">
        <section class="card" aria-labelledby="password-title">
          <h2 id="password-title">Change your password</h2>
          <form onSubmit={submit} noValidate>
            <ErrorNotice problem={error && Object.keys(error.fields).length === 0 ? error : undefined} />
            <Field label="Current password" name="current_password" error={error?.fields.current_password}>
              {(attrs) => (
                <input {...attrs} type="password" autoComplete="current-password" value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
              )}
            </Field>
            <Field label="New password" name="new_password" error={error?.fields.new_password} hint="12 to 256 characters. Your other sessions are signed out.">
              {(attrs) => (
                <input {...attrs} type="password" autoComplete="new-password" value={next} onInput={(e) => setNext(e.currentTarget.value)} />
              )}
            </Field>
            {saved && (
              <p class="notice" role="status">
                Password changed.
              </p>
            )}
            <button type="submit">Change password</button>
          </form>
        </section>
        {session.isAdmin && <LoginCard kind={PrincipalKind.ADMIN} id="" />}
      </div>
    </>
  );
}
