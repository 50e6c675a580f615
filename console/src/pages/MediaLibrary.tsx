// A customer's media library: the tracks its AutoDJ services play, uploaded from the browser.
// Reached from the Customer Overview, and by a customer from the side menu.
import { useRoute } from "preact-iso";
import { api } from "../api";
import { useLoad } from "../hooks";
import { useSession } from "../session";
import { MediaTrackSchema } from "../gen/castplane/v1/media_pb";
import { isNotFound } from "../problem";
import { MediaFiles } from "../components/MediaFiles";
import { PageHeader } from "../components/ui";
import { NotFound } from "./NotFound";

function MediaLibrary({ customerId }: { customerId: string }) {
  const session = useSession();
  const customer = useLoad((signal) => api.accounts.getCustomer({ id: customerId }, { signal }), [customerId]);
  if (customer.failure && isNotFound(customer.failure)) return <NotFound what="customer" />;
  const name = customer.data?.displayName;
  return (
    <>
      <PageHeader title="Media library" />
      <p class="lede">
        {session.isCustomer ? (
          "Your tracks"
        ) : (
          <>
            Tracks of <a href={`/customers/${customerId}`}>{name ?? "the customer"}</a>
          </>
        )}
        , played by AutoDJ on every one of {session.isCustomer ? "your" : "its"} audio services. Uploads count against
        the disk quota of {session.isCustomer ? "your" : "its"} services.
      </p>
      <section class="card" aria-labelledby="tracks-title">
        <h2 id="tracks-title">Tracks</h2>
        <MediaFiles
          noun="track"
          accept="audio/*,.mp3,.ogg,.oga,.opus,.flac,.m4a,.aac,.wav"
          uploadPath={`/uploads/v1/customers/${encodeURIComponent(customerId)}/tracks`}
          schema={MediaTrackSchema}
          list={async (pageToken, signal) => {
            const r = await api.library.listMediaTracks({ customerId, pageToken, pageSize: 50 }, { signal });
            return { files: r.mediaTracks, nextPageToken: r.nextPageToken };
          }}
          remove={async (id) => {
            await api.library.deleteMediaTrack({ id });
          }}
          deleteWarning="The track leaves the library, and every AutoDJ that plays it stops playing it."
        />
      </section>
    </>
  );
}

/** /customers/:id/media */
export function CustomerMediaLibrary() {
  const { params } = useRoute();
  return <MediaLibrary customerId={params.id} />;
}

/** /media: the signed-in customer's own library. */
export function OwnMediaLibrary() {
  const session = useSession();
  if (!session.isCustomer) return <NotFound what="media library" />;
  return <MediaLibrary customerId={session.caller.principalId} />;
}
