// One resource of a reseller's quota: used / limit / available, as a bar and in words.
import type { ResourceUsage } from "../gen/castplane/v1/catalog_pb";
import { Resource } from "../gen/castplane/v1/catalog_pb";
import { RESOURCE_NAME } from "../format";
import { RESOURCE_LABELS } from "../problem";

export function usageWords(u: ResourceUsage): { used: string; limit: string; available: string } {
  const max = u.limit?.max;
  const perService = u.resource === Resource.MAX_BITRATE_KBPS;
  return {
    used: perService ? `highest in use ${u.used}` : `${u.used} used`,
    limit: max === undefined ? "unlimited" : `limit ${max}${perService ? " per service" : ""}`,
    available: u.available === undefined ? "no limit" : `${u.available} available`,
  };
}

export function UsageMeter({ usage }: { usage: ResourceUsage }) {
  const name = RESOURCE_NAME[usage.resource];
  const label = RESOURCE_LABELS[name] ?? name;
  const max = usage.limit?.max;
  const words = usageWords(usage);
  const id = `usage-${name}`;
  return (
    <div class="usage" data-resource={name}>
      <div class="usage-label" id={id}>
        <strong>{label}</strong>
        <span>
          {words.used} · {words.limit} · {words.available}
        </span>
      </div>
      {max !== undefined && max > 0n ? (
        <meter
          aria-labelledby={id}
          min={0}
          max={Number(max)}
          value={Math.min(Number(usage.used), Number(max))}
          high={Number(max) * 0.8}
          optimum={0}
        />
      ) : (
        <div class="meter-unlimited" aria-hidden="true" />
      )}
    </div>
  );
}
