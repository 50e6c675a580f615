// The Quick Wizard: 1) Select Customer (a–z, reseller or sub-account), 2) Media Service Type
// (with "Use selected media as default in the future."), 3) General Configuration beside the
// current usage and what is still available. One CreateMediaService call at the end.
import { useState } from "preact/hooks";
import { useLocation } from "preact-iso";
import { api } from "../api";
import { useLoad } from "../hooks";
import { useSession } from "../session";
import { ServiceKind, ServiceType } from "../gen/castplane/v1/common_pb";
import type { ResourceUsage } from "../gen/castplane/v1/catalog_pb";
import { RESOURCE_NAME } from "../format";
import { problem, type Problem } from "../problem";
import { ErrorNotice, Field, Loading, PageHeader } from "../components/ui";
import { usageWords } from "../components/UsageMeter";

const STEPS = ["Select Customer", "Media Service Type", "General Configuration"];

interface Config {
  name: string;
  displayName: string;
  maxListeners: string;
  maxBitrateKbps: string;
  diskQuotaMb: string;
  bandwidthGbPerMonth: string;
  autodj: boolean;
}

export function Wizard() {
  const session = useSession();
  const location = useLocation();
  const preselected = location.query.customer ?? "";
  const [resellerId, setResellerId] = useState(location.query.reseller ?? "");
  const [step, setStep] = useState(preselected ? 1 : 0);
  const [customerId, setCustomerId] = useState(preselected);
  const [type, setType] = useState<ServiceType>();
  const [remember, setRemember] = useState(false);
  const [config, setConfig] = useState<Config>({
    name: "",
    displayName: "",
    maxListeners: "100",
    maxBitrateKbps: "128",
    diskQuotaMb: "1000",
    bandwidthGbPerMonth: "100",
    autodj: false,
  });
  const [error, setError] = useState<Problem>();
  const [busy, setBusy] = useState(false);

  const resellers = useLoad(
    (signal) =>
      session.isAdmin ? api.accounts.listResellers({ pageSize: 1000 }, { signal }) : Promise.resolve(undefined),
    [],
  );
  const scopeReseller = session.isAdmin ? resellerId : "";
  const ready = !session.isAdmin || Boolean(resellerId);
  const choices = useLoad(
    (signal) =>
      ready ? api.accounts.listCustomerChoices({ resellerId: scopeReseller }, { signal }) : Promise.resolve(undefined),
    [scopeReseller],
  );
  const options = useLoad(
    async (signal) => {
      if (!ready) return undefined;
      const o = await api.catalog.getProvisioningOptions({ resellerId: scopeReseller }, { signal });
      setType((current) => current ?? (o.defaultServiceType || o.allowedServiceTypes[0]?.type));
      return o;
    },
    [scopeReseller],
  );
  const usage = useLoad(
    (signal) =>
      ready ? api.catalog.getResellerUsage({ resellerId: scopeReseller }, { signal }) : Promise.resolve(undefined),
    [scopeReseller],
  );
  const usageOf = (name: string): ResourceUsage | undefined =>
    usage.data?.resources.find((r) => RESOURCE_NAME[r.resource] === name);
  const chosenType = options.data?.allowedServiceTypes.find((t) => t.type === type);
  const customer = choices.data?.choices.find((c) => c.customerId === customerId);

  const set = (key: keyof Config) => (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    setConfig({ ...config, [key]: input.type === "checkbox" ? input.checked : input.value });
  };

  const create = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const created = await api.services.createMediaService({
        mediaService: {
          customerId,
          type,
          name: config.name.trim(),
          displayName: config.displayName.trim(),
          maxListeners: Number(config.maxListeners),
          maxBitrateKbps: Number(config.maxBitrateKbps),
          diskQuotaMb: BigInt(Math.max(0, Math.trunc(Number(config.diskQuotaMb) || 0))),
          bandwidthGbPerMonth: BigInt(Math.max(0, Math.trunc(Number(config.bandwidthGbPerMonth) || 0))),
          autodj: chosenType?.supportsAutodj ? config.autodj : false,
        },
        rememberTypeAsDefault: remember,
      });
      location.route(`/services/${created.id}`);
    } catch (err) {
      const p = problem(err);
      setError(p);
      // Errors about the customer or type send the person back to the step that chose them.
      if (p.fields["media_service.customer_id"]) setStep(0);
      else if (p.fields["media_service.type"]) setStep(1);
    } finally {
      setBusy(false);
    }
  };

  const numberField = (key: keyof Config, label: string, wire: string, resource?: string, unit = "") => {
    const u = resource ? usageOf(resource) : undefined;
    const words = u && usageWords(u);
    return (
      <Field
        label={label}
        name={`media_service.${wire}`}
        error={error?.fields[`media_service.${wire}`]}
        hint={
          words && (
            <span class="usage-hint" data-resource={resource}>
              Current usage: {words.used}{unit} · {words.limit} · <strong>{words.available}</strong>
            </span>
          )
        }
      >
        {(attrs) => (
          <input {...attrs} type="number" inputMode="numeric" min={0} required value={config[key] as string} onInput={set(key)} />
        )}
      </Field>
    );
  };

  return (
    <>
      <PageHeader title="Quick Wizard: new media service" />
      <ol class="wizard-steps" aria-label="Steps">
        {STEPS.map((label, i) => (
          <li aria-current={i === step ? "step" : undefined} class={i < step ? "done" : ""}>
            {i < step ? (
              <button type="button" class="link" onClick={() => setStep(i)}>
                {i + 1}. {label}
              </button>
            ) : (
              <span>
                {i + 1}. {label}
              </span>
            )}
          </li>
        ))}
      </ol>
      <ErrorNotice problem={error} />

      {session.isAdmin && step === 0 && (
        <div class="field">
          <label for="wizard-reseller">Reseller</label>
          <select
            id="wizard-reseller"
            value={resellerId}
            onChange={(e) => {
              setResellerId(e.currentTarget.value);
              setCustomerId("");
              setType(undefined);
            }}
          >
            <option value="">Choose a reseller…</option>
            {resellers.data?.resellers.map((r) => (
              <option value={r.id}>{r.displayName}</option>
            ))}
          </select>
        </div>
      )}

      {step === 0 && ready && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (customerId) setStep(1);
          }}
        >
          <fieldset>
            <legend>Select Customer</legend>
            <p class="hint">The account the service is for, including your own.</p>
            {!choices.data && <Loading what="customers" />}
            <ul class="choices" data-testid="customer-choices">
              {choices.data?.choices.map((c) => (
                <li>
                  <label>
                    <input
                      type="radio"
                      name="customer"
                      value={c.customerId}
                      checked={customerId === c.customerId}
                      onChange={() => setCustomerId(c.customerId)}
                    />
                    <span class="choice-name">{c.displayName}</span>
                    <span class="badge">{c.label}</span>
                  </label>
                </li>
              ))}
            </ul>
          </fieldset>
          <button type="submit" class="primary" disabled={!customerId}>
            Next: Media Service Type
          </button>
        </form>
      )}

      {step === 1 && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (type) setStep(2);
          }}
        >
          <p>
            For <strong>{customer?.displayName ?? customerId}</strong>
            {customer && <span class="muted"> ({customer.label})</span>}
          </p>
          <fieldset>
            <legend>Media Service Type</legend>
            <p class="hint">The types your provider allows you to provision.</p>
            {!options.data && <Loading what="service types" />}
            {options.data?.allowedServiceTypes.length === 0 && (
              <p class="notice error">Your provider has not allowed any service type yet.</p>
            )}
            <ul class="choices">
              {options.data?.allowedServiceTypes.map((t) => (
                <li>
                  <label>
                    <input type="radio" name="type" checked={type === t.type} onChange={() => setType(t.type)} />
                    <span class="choice-name">{t.displayName}</span>
                    <span class="muted">{t.description}</span>
                  </label>
                </li>
              ))}
            </ul>
            <label class="checkbox">
              <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
              Use selected media as default in the future.
            </label>
          </fieldset>
          <div class="button-row">
            <button type="button" onClick={() => setStep(0)}>
              Back
            </button>
            <button type="submit" class="primary" disabled={!type}>
              Next: General Configuration
            </button>
          </div>
        </form>
      )}

      {step === 2 && (
        <form onSubmit={create} noValidate>
          <p>
            {chosenType?.displayName} for <strong>{customer?.displayName ?? customerId}</strong>
          </p>
          <fieldset>
            <legend>General Configuration</legend>
            <Field
              label="Name"
              name="media_service.name"
              error={error?.fields["media_service.name"]}
              hint="Lowercase letters, digits and hyphens, starting with a letter; used in URLs and on the command line."
            >
              {(attrs) => <input {...attrs} required autoComplete="off" value={config.name} onInput={set("name")} />}
            </Field>
            <Field label="Display name" name="media_service.display_name" error={error?.fields["media_service.display_name"]} hint="Shown to listeners.">
              {(attrs) => <input {...attrs} value={config.displayName} onInput={set("displayName")} />}
            </Field>
            {numberField("maxListeners", "Max listeners", "max_listeners", "listener_slots")}
            {numberField("maxBitrateKbps", "Max bitrate (kbps)", "max_bitrate_kbps", "max_bitrate_kbps")}
            {numberField("diskQuotaMb", "Disk quota (MB)", "disk_quota_mb", "disk_mb")}
            {numberField("bandwidthGbPerMonth", "Bandwidth (GB per month)", "bandwidth_gb_per_month", "bandwidth_gb_per_month")}
            {chosenType?.kind === ServiceKind.AUDIO && chosenType.supportsAutodj && (
              <label class="checkbox">
                <input type="checkbox" checked={config.autodj} onChange={set("autodj")} />
                AutoDJ: play the customer's media library when no live source is connected
              </label>
            )}
            {usageOf("services") && (
              <p class="hint usage-hint" data-resource="services">
                Services: {usageWords(usageOf("services")!).used} · {usageWords(usageOf("services")!).limit} ·{" "}
                <strong>{usageWords(usageOf("services")!).available}</strong>
              </p>
            )}
          </fieldset>
          <div class="button-row">
            <button type="button" onClick={() => setStep(1)}>
              Back
            </button>
            <button type="submit" class="primary" disabled={busy}>
              {busy ? "Creating…" : "Create service"}
            </button>
          </div>
        </form>
      )}
    </>
  );
}
