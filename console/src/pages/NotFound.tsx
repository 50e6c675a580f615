import { PageHeader } from "../components/ui";

export function NotFound({ what = "page" }: { what?: string }) {
  return (
    <>
      <PageHeader title="Not found" />
      <p role="status">
        This {what} does not exist, or is not yours to see. <a href="/">Go to the dashboard</a>.
      </p>
    </>
  );
}
