//! What ffprobe says an uploaded file is. Only files it recognises are kept: a track must have
//! an audio stream (and no video one: cover art aside, a video is not a track), a video file a
//! video stream. The file name on nodes gets its extension from the format ffprobe found,
//! never from what the uploader called it, and formats liquidsoap or a browser cannot play are
//! refused rather than stored.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::ServiceError;

/// ffprobe reads headers, not the whole file; a file it cannot judge by then is refused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq)]
pub struct Probed {
    pub format: String,
    pub codec: String,
    pub extension: &'static str,
    pub duration_ms: i64,
    pub bit_rate: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Audio,
    Video,
}

#[derive(Deserialize, Default)]
struct Output {
    #[serde(default)]
    streams: Vec<Stream>,
    #[serde(default)]
    format: Format,
}

#[derive(Deserialize, Default)]
struct Stream {
    #[serde(default)]
    codec_type: String,
    #[serde(default)]
    codec_name: String,
    #[serde(default)]
    disposition: Disposition,
}

#[derive(Deserialize, Default)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Deserialize, Default)]
struct Format {
    #[serde(default)]
    format_name: String,
    #[serde(default)]
    duration: Option<String>,
    #[serde(default)]
    bit_rate: Option<String>,
}

/// Runs ffprobe on `path` (a spooled upload) and judges what it found.
pub async fn probe(path: &Path, expect: Expect) -> Result<Probed, ServiceError> {
    let mut command = tokio::process::Command::new("ffprobe");
    command
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        // `file:` so that no name could be read as another protocol.
        .arg(format!("file:{}", path.display()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            ServiceError::invalid_field(
                "chunk",
                format!(
                    "ffprobe could not read the file within {} s",
                    PROBE_TIMEOUT.as_secs()
                ),
            )
        })?
        .map_err(|e| {
            ServiceError::Unavailable(format!(
                "cannot run ffprobe ({e}): install ffmpeg on the control plane's host"
            ))
        })?;
    if !output.status.success() {
        return Err(not_recognised(expect, "ffprobe does not recognise it"));
    }
    let parsed: Output = serde_json::from_slice(&output.stdout)
        .map_err(|_| not_recognised(expect, "ffprobe's answer does not parse"))?;
    judge(parsed, expect)
}

fn not_recognised(expect: Expect, why: &str) -> ServiceError {
    let what = match expect {
        Expect::Audio => "audio",
        Expect::Video => "video",
    };
    ServiceError::invalid_field(
        "chunk",
        format!("the file is not {what} castplane can play: {why}"),
    )
}

fn judge(output: Output, expect: Expect) -> Result<Probed, ServiceError> {
    let real = |kind: &str| {
        output
            .streams
            .iter()
            .find(|s| s.codec_type == kind && s.disposition.attached_pic == 0)
    };
    let stream = match expect {
        Expect::Audio => {
            if real("video").is_some() {
                return Err(not_recognised(
                    expect,
                    "it has a video stream (upload it as a video file)",
                ));
            }
            real("audio").ok_or_else(|| not_recognised(expect, "it has no audio stream"))?
        }
        Expect::Video => {
            real("video").ok_or_else(|| not_recognised(expect, "it has no video stream"))?
        }
    };
    let format = output.format.format_name.clone();
    let extension = extension_of(&format, &stream.codec_name, expect).ok_or_else(|| {
        not_recognised(
            expect,
            &format!("format {format:?} is not one castplane serves"),
        )
    })?;
    let duration_ms = output
        .format
        .duration
        .as_deref()
        .and_then(|d| d.parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d >= 0.0 && *d < 1e9)
        .map(|d| (d * 1000.0).round() as i64)
        .unwrap_or(0);
    let bit_rate = output
        .format
        .bit_rate
        .as_deref()
        .and_then(|b| b.parse::<i64>().ok())
        .filter(|b| *b >= 0)
        .unwrap_or(0);
    Ok(Probed {
        format,
        codec: stream.codec_name.chars().take(64).collect(),
        extension,
        duration_ms,
        bit_rate,
    })
}

/// The extension a node names the file with; `None`: not a format castplane serves.
fn extension_of(format: &str, codec: &str, expect: Expect) -> Option<&'static str> {
    match (expect, format) {
        (Expect::Audio, "mp3") => Some("mp3"),
        (Expect::Audio, "ogg") => Some(if codec == "opus" { "opus" } else { "ogg" }),
        (Expect::Audio, "flac") => Some("flac"),
        (Expect::Audio, "wav") => Some("wav"),
        (Expect::Audio, "aac") => Some("aac"),
        (Expect::Audio, "mov,mp4,m4a,3gp,3g2,mj2") => Some("m4a"),
        (Expect::Video, "mov,mp4,m4a,3gp,3g2,mj2") => Some("mp4"),
        (Expect::Video, "matroska,webm") => Some(if matches!(codec, "vp8" | "vp9" | "av1") {
            "webm"
        } else {
            "mkv"
        }),
        (Expect::Video, "flv") => Some("flv"),
        (Expect::Video, "mpegts") => Some("ts"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(json: &str) -> Output {
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn an_mp3_with_cover_art_is_a_track_and_a_video_is_not() {
        let mp3 = output(
            r#"{"streams":[{"codec_type":"audio","codec_name":"mp3"},
                {"codec_type":"video","codec_name":"mjpeg","disposition":{"attached_pic":1}}],
               "format":{"format_name":"mp3","duration":"12.500000","bit_rate":"128000"}}"#,
        );
        let probed = judge(mp3, Expect::Audio).expect("audio");
        assert_eq!(
            (probed.extension, probed.duration_ms, probed.bit_rate),
            ("mp3", 12_500, 128_000)
        );
        let mp4 = r#"{"streams":[{"codec_type":"video","codec_name":"h264"},{"codec_type":"audio","codec_name":"aac"}],
               "format":{"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"2.0"}}"#;
        assert!(judge(output(mp4), Expect::Audio).is_err());
        assert_eq!(
            judge(output(mp4), Expect::Video).expect("video").extension,
            "mp4"
        );
    }

    #[test]
    fn unknown_formats_and_streamless_files_are_refused() {
        let text = output(r#"{"streams":[],"format":{"format_name":"tty"}}"#);
        assert!(judge(text, Expect::Audio).is_err());
        let image = output(
            r#"{"streams":[{"codec_type":"video","codec_name":"png"}],"format":{"format_name":"png_pipe"}}"#,
        );
        assert!(judge(image, Expect::Video).is_err());
    }
}
