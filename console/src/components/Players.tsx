// Players for a service's output: the audio stream itself, or the video service's HLS playlist
// (hls.js where the browser has no native HLS, loaded only when a video page needs it).
import { useEffect, useRef, useState } from "preact/hooks";

export function AudioPlayer({ url, name }: { url: string; name: string }) {
  return (
    <figure class="player">
      <figcaption>Listen to {name}</figcaption>
      {/* preload="none": nothing is fetched (and no listener slot taken) until Play. */}
      <audio controls preload="none" src={url} aria-label={`Audio stream of ${name}`} />
      <p class="hint">
        Plays <code>{url}</code>. A stream with no source connected has nothing to play.
      </p>
    </figure>
  );
}

export function HlsPlayer({ url, name }: { url: string; name: string }) {
  const video = useRef<HTMLVideoElement>(null);
  const [error, setError] = useState<string>();
  useEffect(() => {
    const element = video.current;
    if (!element) return;
    if (element.canPlayType("application/vnd.apple.mpegurl")) {
      element.src = url;
      return;
    }
    let destroy = () => {};
    let cancelled = false;
    import("hls.js/light").then(({ default: Hls }) => {
      if (cancelled) return;
      if (!Hls.isSupported()) {
        setError("This browser cannot play HLS video.");
        return;
      }
      const hls = new Hls({ liveDurationInfinity: true });
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) setError("The live stream is not available: is a broadcaster publishing?");
      });
      hls.loadSource(url);
      hls.attachMedia(element);
      destroy = () => hls.destroy();
    });
    return () => {
      cancelled = true;
      destroy();
    };
  }, [url]);
  return (
    <figure class="player">
      <figcaption>Watch {name}</figcaption>
      <video ref={video} controls muted playsInline aria-label={`Live video of ${name}`} />
      {error && <p class="notice">{error}</p>}
      <p class="hint">
        Plays <code>{url}</code>.
      </p>
    </figure>
  );
}
