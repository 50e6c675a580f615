// For the admin: resellers with their limits and allowed service types; create and edit them.
import { useState } from "preact/hooks";
import { useLocation, useRoute } from "preact-iso";
import { api } from "../api";
import { useLoad } from "../hooks";
import type { Reseller, ResellerLimits } from "../gen/castplane/v1/accounts_pb";
import { PrincipalKind } from "../gen/castplane/v1/accounts_pb";
import { ServiceType } from "../gen/castplane/v1/common_pb";
import { SERVICE_TYPE } from "../format";
import { isNotFound, problem, RESOURCE_LABELS, type Problem } from "../problem";
import { ErrorNotice, Field, Loading, PageHeader, Pager } from "../components/ui";
import { LoginCard } from "../components/LoginCard";
import { NotFound } from "./NotFound";

const LIMITS: (keyof Omit<ResellerLimits, "$typeName" | "$unknown">)[] = [
  "customers",
  "services",
  "listenerSlots",
  "maxBitrateKbps",
  "diskMb",
  "bandwidthGbPerMonth",
];
const LIMIT_WIRE: Record<(typeof LIMITS)[number], string> = {
  customers: "customers",
  services: "services",
  listenerSlots: "listener_slots",
  maxBitrateKbps: "max_bitrate_kbps",
  diskMb: "disk_mb",
  bandwidthGbPerMonth: "bandwidth_gb_per_month",
};
const TYPES = [ServiceType.ICECAST, ServiceType.SHOUTCAST, ServiceType.VIDEO];

function limitText(r: Reseller, key: (typeof LIMITS)[number]): string {
  const max = r.limits?.[key]?.max;
  return max === undefined ? "unlimited" : String(max);
}

export function Resellers() {
  const [tokens, setTokens] = useState<string[]>([""]);
  const list = useLoad(
    (signal) => api.accounts.listResellers({ pageSize: 50, pageToken: tokens[tokens.length - 1] }, { signal }),
    [tokens],
  );
  return (
    <>
      <PageHeader title="Resellers">
        <a class="button primary" href="/resellers/new">
          Create reseller
        </a>
      </PageHeader>
      <ErrorNotice problem={list.error} />
      {!list.data && !list.error && <Loading what="resellers" />}
      {list.data && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Reseller</th>
                <th scope="col">Allowed types</th>
                {LIMITS.map((k) => (
                  <th scope="col">{RESOURCE_LABELS[LIMIT_WIRE[k]]}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {list.data.resellers.map((r) => (
                <tr>
                  <td>
                    <a href={`/resellers/${r.id}`}>{r.displayName}</a>
                  </td>
                  <td>{r.allowedServiceTypes.map((t) => SERVICE_TYPE[t]).join(", ") || "none"}</td>
                  {LIMITS.map((k) => (
                    <td>{limitText(r, k)}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        label="Reseller pages"
        hasPrevious={tokens.length > 1}
        nextToken={list.data?.nextPageToken ?? ""}
        onPrevious={() => setTokens((t) => t.slice(0, -1))}
        onNext={() => list.data && setTokens((t) => [...t, list.data!.nextPageToken])}
      />
    </>
  );
}

type LimitInputs = Record<(typeof LIMITS)[number], string>;

function limitInputs(r?: Reseller): LimitInputs {
  const out = {} as LimitInputs;
  for (const k of LIMITS) {
    const max = r?.limits?.[k]?.max;
    out[k] = max === undefined ? "" : String(max);
  }
  return out;
}

function limitsFromInputs(inputs: LimitInputs) {
  const limits: Record<string, { max?: bigint }> = {};
  for (const k of LIMITS) {
    const text = inputs[k].trim();
    limits[k] = text === "" ? {} : { max: BigInt(Math.max(0, Math.trunc(Number(text) || 0))) };
  }
  return limits;
}

function ResellerForm(props: {
  reseller?: Reseller;
  submitLabel: string;
  onSubmit: (name: string, types: ServiceType[], limits: Record<string, { max?: bigint }>) => Promise<void>;
}) {
  const [name, setName] = useState(props.reseller?.displayName ?? "");
  const [types, setTypes] = useState<ServiceType[]>(props.reseller?.allowedServiceTypes ?? [ServiceType.ICECAST]);
  const [limits, setLimits] = useState<LimitInputs>(limitInputs(props.reseller));
  const [error, setError] = useState<Problem>();
  const [saved, setSaved] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setSaved(false);
    try {
      await props.onSubmit(name, types, limitsFromInputs(limits));
      setSaved(true);
    } catch (err) {
      setError(problem(err));
    }
  };
  return (
    <form onSubmit={submit} noValidate>
      <ErrorNotice problem={error} />
      <Field label="Name" name="reseller.display_name" error={error?.fields["reseller.display_name"]}>
        {(attrs) => <input {...attrs} required value={name} onInput={(e) => setName(e.currentTarget.value)} />}
      </Field>
      <fieldset>
        <legend>Allowed service types</legend>
        {TYPES.map((t) => (
          <label class="checkbox">
            <input
              type="checkbox"
              checked={types.includes(t)}
              onChange={(e) =>
                setTypes(e.currentTarget.checked ? [...types, t] : types.filter((x) => x !== t))
              }
            />
            {SERVICE_TYPE[t]}
          </label>
        ))}
      </fieldset>
      <fieldset>
        <legend>Limits (empty means unlimited)</legend>
        {LIMITS.map((k) => (
          <Field label={RESOURCE_LABELS[LIMIT_WIRE[k]]} name={`reseller.limits.${LIMIT_WIRE[k]}`}>
            {(attrs) => (
              <input
                {...attrs}
                type="number"
                min={0}
                inputMode="numeric"
                placeholder="unlimited"
                value={limits[k]}
                onInput={(e) => setLimits({ ...limits, [k]: e.currentTarget.value })}
              />
            )}
          </Field>
        ))}
      </fieldset>
      {saved && (
        <p class="notice" role="status">
          Saved.
        </p>
      )}
      <button type="submit" class="primary">
        {props.submitLabel}
      </button>
    </form>
  );
}

export function NewReseller() {
  const location = useLocation();
  return (
    <>
      <PageHeader title="Create reseller" />
      <ResellerForm
        submitLabel="Create reseller"
        onSubmit={async (displayName, allowedServiceTypes, limits) => {
          const r = await api.accounts.createReseller({ reseller: { displayName, allowedServiceTypes, limits } });
          location.route(`/resellers/${r.id}`);
        }}
      />
    </>
  );
}

export function ResellerPage() {
  const { params } = useRoute();
  const reseller = useLoad((signal) => api.accounts.getReseller({ id: params.id }, { signal }), [params.id]);
  if (reseller.failure && isNotFound(reseller.failure)) return <NotFound what="reseller" />;
  const r = reseller.data;
  if (!r) return reseller.error ? <ErrorNotice problem={reseller.error} /> : <Loading what="the reseller" />;
  return (
    <>
      <PageHeader title={r.displayName}>
        <a class="button" href={`/customers?reseller=${r.id}`}>
          Its customers
        </a>
      </PageHeader>
      <div class="grid">
        <section class="card" aria-labelledby="reseller-edit-title">
          <h2 id="reseller-edit-title">Limits and allowed types</h2>
          <ResellerForm
            reseller={r}
            submitLabel="Save changes"
            onSubmit={async (displayName, allowedServiceTypes, limits) => {
              await api.accounts.updateReseller({
                reseller: { id: r.id, displayName, allowedServiceTypes, limits },
                updateMask: { paths: ["display_name", "allowed_service_types", "limits"] },
              });
              reseller.reload();
            }}
          />
        </section>
        <LoginCard kind={PrincipalKind.RESELLER} id={r.id} />
      </div>
    </>
  );
}
