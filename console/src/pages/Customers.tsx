// Customers a–z (the reseller's own primary account marked), Customer Overview, create, edit.
import { useState } from "preact/hooks";
import { useLocation, useRoute } from "preact-iso";
import { api } from "../api";
import { useLoad } from "../hooks";
import { useSession } from "../session";
import { CustomerKind, PrincipalKind } from "../gen/castplane/v1/accounts_pb";
import { isNotFound, problem, type Problem } from "../problem";
import { when } from "../format";
import { ErrorNotice, Field, Loading, PageHeader } from "../components/ui";
import { LoginCard } from "../components/LoginCard";
import { ServiceTable } from "./Services";
import { NotFound } from "./NotFound";

function ResellerPicker(props: { value: string; onChange: (id: string) => void }) {
  const resellers = useLoad((signal) => api.accounts.listResellers({ pageSize: 1000 }, { signal }), []);
  return (
    <div class="field">
      <label for="customers-reseller">Reseller</label>
      <select id="customers-reseller" value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">Choose a reseller…</option>
        {resellers.data?.resellers.map((r) => (
          <option value={r.id}>{r.displayName}</option>
        ))}
      </select>
    </div>
  );
}

export function Customers() {
  const session = useSession();
  const location = useLocation();
  const [resellerId, setResellerId] = useState(location.query.reseller ?? "");
  const ready = !session.isAdmin || Boolean(resellerId);
  const list = useLoad(
    (signal) =>
      ready
        ? api.accounts.listCustomerChoices({ resellerId: session.isAdmin ? resellerId : "" }, { signal })
        : Promise.resolve(undefined),
    [resellerId],
  );
  return (
    <>
      <PageHeader title="Customers">
        <a class="button primary" href={`/customers/new${resellerId ? `?reseller=${resellerId}` : ""}`}>
          Create customer
        </a>
      </PageHeader>
      {session.isAdmin && <ResellerPicker value={resellerId} onChange={setResellerId} />}
      <ErrorNotice problem={list.error} />
      {ready && !list.data && !list.error && <Loading what="customers" />}
      {list.data && (
        <ul class="customer-list" aria-label="Customers, a to z">
          {list.data.choices.map((c) => (
            <li>
              <a href={`/customers/${c.customerId}`}>{c.displayName}</a> <span class="badge">{c.label}</span>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

export function NewCustomer() {
  const session = useSession();
  const location = useLocation();
  const [resellerId, setResellerId] = useState(location.query.reseller ?? "");
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [error, setError] = useState<Problem>();
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const created = await api.accounts.createCustomer({
        customer: { displayName: name, email, resellerId: session.isAdmin ? resellerId : "" },
      });
      location.route(`/customers/${created.id}`);
    } catch (err) {
      setError(problem(err));
    }
  };
  return (
    <>
      <PageHeader title="Create customer" />
      {session.isAdmin && <ResellerPicker value={resellerId} onChange={setResellerId} />}
      <form onSubmit={submit} noValidate class="narrow">
        <ErrorNotice problem={error} />
        <Field label="Name" name="customer.display_name" error={error?.fields["customer.display_name"]}>
          {(attrs) => <input {...attrs} required value={name} onInput={(e) => setName(e.currentTarget.value)} />}
        </Field>
        <Field label="Email" name="customer.email" error={error?.fields["customer.email"]}>
          {(attrs) => <input {...attrs} type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} />}
        </Field>
        <button type="submit" class="primary">
          Create customer
        </button>
      </form>
    </>
  );
}

export function CustomerOverview() {
  const { params } = useRoute();
  const session = useSession();
  const customer = useLoad((signal) => api.accounts.getCustomer({ id: params.id }, { signal }), [params.id]);
  const services = useLoad(
    (signal) => api.services.listMediaServices({ customerId: params.id, pageSize: 100 }, { signal }),
    [params.id],
  );
  const [name, setName] = useState<string>();
  const [email, setEmail] = useState<string>();
  const [error, setError] = useState<Problem>();
  const [saved, setSaved] = useState(false);
  if (customer.failure && isNotFound(customer.failure)) return <NotFound what="customer" />;
  const c = customer.data;
  if (!c) return customer.error ? <ErrorNotice problem={customer.error} /> : <Loading what="the customer" />;
  const primary = c.kind === CustomerKind.PRIMARY_ACCOUNT;
  const canRename = session.isAdmin || (session.isReseller && !primary);
  const save = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setSaved(false);
    const paths = [
      ...(name !== undefined && name !== c.displayName ? ["display_name"] : []),
      ...(email !== undefined && email !== c.email ? ["email"] : []),
    ];
    if (paths.length === 0) return;
    try {
      await api.accounts.updateCustomer({
        customer: { id: c.id, displayName: name ?? c.displayName, email: email ?? c.email },
        updateMask: { paths },
      });
      setSaved(true);
      customer.reload();
    } catch (err) {
      setError(problem(err));
    }
  };
  return (
    <>
      <PageHeader title={c.displayName}>
        {!session.isCustomer && (
          <a class="button primary" href={`/create?customer=${c.id}${session.isAdmin ? `&reseller=${c.resellerId}` : ""}`}>
            Create Service
          </a>
        )}
      </PageHeader>
      <p class="lede">
        Customer Overview · {primary ? "reseller (primary account)" : "sub-account"} · since {when(c.createTime)}
      </p>
      <div class="grid">
        <section class="card" aria-labelledby="details-title">
          <h2 id="details-title">Details</h2>
          <form onSubmit={save} noValidate>
            <ErrorNotice problem={error} />
            <Field
              label="Name"
              name="customer.display_name"
              error={error?.fields["customer.display_name"]}
              hint={primary && !session.isAdmin ? "Your own account's name is the reseller's; your provider changes it." : undefined}
            >
              {(attrs) => (
                <input
                  {...attrs}
                  value={name ?? c.displayName}
                  disabled={!canRename}
                  onInput={(e) => setName(e.currentTarget.value)}
                />
              )}
            </Field>
            <Field label="Email" name="customer.email" error={error?.fields["customer.email"]}>
              {(attrs) => (
                <input {...attrs} type="email" value={email ?? c.email} onInput={(e) => setEmail(e.currentTarget.value)} />
              )}
            </Field>
            {saved && (
              <p class="notice" role="status">
                Saved.
              </p>
            )}
            <button type="submit">Save changes</button>
          </form>
        </section>
        {!session.isCustomer && !primary && (
          <LoginCard kind={PrincipalKind.CUSTOMER} id={c.id} defaultEmail={c.email} />
        )}
        <section class="card wide" aria-labelledby="customer-services-title">
          <h2 id="customer-services-title">Media services</h2>
          <ErrorNotice problem={services.error} />
          {services.data?.mediaServices.length === 0 && <p class="muted">No services yet.</p>}
          {!!services.data?.mediaServices.length && <ServiceTable services={services.data.mediaServices} />}
        </section>
        <section class="card" aria-labelledby="customer-media-title">
          <h2 id="customer-media-title">Media library</h2>
          <p>The audio tracks AutoDJ plays on {primary && !session.isAdmin ? "your" : "the customer's"} services.</p>
          <a class="button" href={`/customers/${c.id}/media`}>
            Open the media library
          </a>
        </section>
      </div>
    </>
  );
}
