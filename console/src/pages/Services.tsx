// "My Services" (the reseller's primary account) and "Media Services" (its customers'), with
// search and paging; the admin and customers see one list of everything they may see.
import { useState } from "preact/hooks";
import { api } from "../api";
import { useLoad } from "../hooks";
import { useSession } from "../session";
import { ServiceScope, type MediaService } from "../gen/castplane/v1/media_services_pb";
import { OBSERVED_STATE, SERVICE_TYPE } from "../format";
import { ErrorNotice, Loading, PageHeader, Pager } from "../components/ui";

const PAGE_SIZE = 20;

export function ServiceTable({ services }: { services: MediaService[] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Display name</th>
            <th scope="col">Type</th>
            <th scope="col">Status</th>
            <th scope="col">Listeners</th>
          </tr>
        </thead>
        <tbody>
          {services.map((s) => (
            <tr>
              <td>
                <a href={`/services/${s.id}`}>{s.name}</a>
              </td>
              <td>{s.displayName}</td>
              <td>{SERVICE_TYPE[s.type]}</td>
              <td>
                <span class={`state state-${OBSERVED_STATE[s.status?.state ?? 0].replace(/ /g, "-")}`}>
                  {s.deleting ? "being deleted" : OBSERVED_STATE[s.status?.state ?? 0]}
                </span>
              </td>
              <td>
                {s.status?.stats?.listeners ?? 0} / {s.maxListeners}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Services({ scope }: { scope: "my" | "customers" | "all" }) {
  const session = useSession();
  const [query, setQuery] = useState("");
  const [search, setSearch] = useState("");
  const [tokens, setTokens] = useState<string[]>([""]);
  const pageToken = tokens[tokens.length - 1];
  const wire =
    scope === "my"
      ? ServiceScope.MY_SERVICES
      : scope === "customers"
        ? ServiceScope.CUSTOMER_SERVICES
        : ServiceScope.ALL;
  const list = useLoad(
    (signal) =>
      api.services.listMediaServices(
        { scope: wire, query: search, pageSize: PAGE_SIZE, pageToken },
        { signal },
      ),
    [wire, search, pageToken],
  );
  const title = scope === "my" ? "My Services" : scope === "customers" ? "Media Services" : "Media Services";
  return (
    <>
      <PageHeader title={title}>
        {!session.isCustomer && (
          <a class="button primary" href="/create">
            Create a new server
          </a>
        )}
      </PageHeader>
      {scope === "my" && <p class="lede">Services of your own account.</p>}
      {scope === "customers" && <p class="lede">Services of your customers' accounts.</p>}
      <form
        role="search"
        class="search"
        onSubmit={(e) => {
          e.preventDefault();
          setSearch(query.trim());
          setTokens([""]);
        }}
      >
        <label for="service-search">Search by name</label>
        <input
          id="service-search"
          type="search"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
        />
        <button type="submit">Search</button>
      </form>
      <ErrorNotice problem={list.error} />
      {list.loading && !list.data && <Loading what="services" />}
      {list.data && list.data.mediaServices.length === 0 && (
        <p class="muted" role="status">
          {search ? `No services match “${search}”.` : "No services yet."}
        </p>
      )}
      {list.data && list.data.mediaServices.length > 0 && (
        <ServiceTable services={list.data.mediaServices} />
      )}
      <Pager
        label="Service pages"
        hasPrevious={tokens.length > 1}
        nextToken={list.data?.nextPageToken ?? ""}
        onPrevious={() => setTokens((t) => t.slice(0, -1))}
        onNext={() => list.data && setTokens((t) => [...t, list.data!.nextPageToken])}
      />
    </>
  );
}
