import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { problem, type Problem } from "./problem";

export interface Loaded<T> {
  data: T | undefined;
  error: Problem | undefined;
  /** The raw error, to tell NOT_FOUND apart. */
  failure: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` now and whenever `deps` change; the latest call wins. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T>();
  const [failure, setFailure] = useState<unknown>();
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    loadRef
      .current(controller.signal)
      .then((value) => {
        if (controller.signal.aborted) return;
        setData(value);
        setFailure(undefined);
      })
      .catch((err) => {
        if (!controller.signal.aborted) setFailure(err ?? new Error("failed"));
      })
      .finally(() => {
        if (!controller.signal.aborted) setLoading(false);
      });
    return () => controller.abort();
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { data, failure, error: failure ? problem(failure) : undefined, loading, reload };
}

/** Calls `tick` every `ms` while the page is shown. */
export function useInterval(tick: () => void, ms: number) {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => {
    const id = window.setInterval(() => {
      if (document.visibilityState === "visible") ref.current();
    }, ms);
    return () => window.clearInterval(id);
  }, [ms]);
}
