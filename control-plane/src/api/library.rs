//! `castplane.v1.MediaLibraryService`: uploads of media tracks and video files.
//!
//! An upload is a client stream: the header first (checked at the boundary like any request),
//! then chunks, handed to the service layer as a stream of bytes so nothing is buffered here.

use bytes::Bytes;
use castplane_proto::v1 as pb;
use castplane_proto::v1::media_library_service_server::MediaLibraryService;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{principal, required};
use crate::clock::to_timestamp;
use crate::domain::Principal;
use crate::error::ServiceError;
use crate::service::ControlPlane;
use crate::service::library::{Upload, VideoFileView};
use crate::service::records;

pub struct MediaLibraryApi {
    pub control_plane: ControlPlane,
}

pub(crate) fn track_to_wire(t: &records::MediaTrack) -> pb::MediaTrack {
    pb::MediaTrack {
        id: t.id.clone(),
        customer_id: t.customer_id.clone(),
        display_name: t.display_name.clone(),
        size_bytes: u64::try_from(t.size_bytes).unwrap_or_default(),
        sha256: t.sha256.clone(),
        format: t.format.clone(),
        codec: t.codec.clone(),
        duration_seconds: t.duration_ms as f64 / 1000.0,
        bit_rate: u64::try_from(t.bit_rate).unwrap_or_default(),
        create_time: Some(to_timestamp(t.create_time)),
    }
}

pub(crate) fn video_to_wire(view: &VideoFileView) -> pb::VideoFile {
    let v = &view.video;
    pb::VideoFile {
        id: v.id.clone(),
        media_service_id: v.media_service_id.clone(),
        display_name: v.display_name.clone(),
        size_bytes: u64::try_from(v.size_bytes).unwrap_or_default(),
        sha256: v.sha256.clone(),
        format: v.format.clone(),
        codec: v.codec.clone(),
        duration_seconds: v.duration_ms as f64 / 1000.0,
        bit_rate: u64::try_from(v.bit_rate).unwrap_or_default(),
        create_time: Some(to_timestamp(v.create_time)),
        url: view.url.clone(),
    }
}

pub(crate) fn upload_of(file: Option<pb::UploadHeader>) -> Upload {
    let file = file.unwrap_or_default();
    Upload {
        file_name: file.file_name,
        size_bytes: file.size_bytes,
        sha256: file.sha256,
    }
}

/// The caller of a streaming call (the auth layer put it there).
fn streaming_principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing API token"))
}

fn interrupted(status: Status) -> ServiceError {
    ServiceError::Aborted(format!(
        "the upload was interrupted ({}); nothing was kept, send it again",
        status.message()
    ))
}

/// The upload's first message, waited for at most as long as any other.
async fn first_message<T>(stream: &mut Streaming<T>) -> Result<Result<Option<T>, Status>, Status> {
    let timeout = crate::service::library::UPLOAD_IDLE_TIMEOUT;
    tokio::time::timeout(timeout, stream.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no upload header arrived within {} s",
                timeout.as_secs()
            ))
        })
}

fn not_header() -> Status {
    ServiceError::invalid_field(
        "header",
        "the first message of an upload must be its header",
    )
    .into()
}

fn after_header() -> ServiceError {
    ServiceError::invalid_field("chunk", "after the header, every message must be a chunk")
}

fn track_chunks(
    stream: Streaming<pb::UploadMediaTrackRequest>,
) -> impl Stream<Item = Result<Bytes, ServiceError>> + Unpin + Send {
    use pb::upload_media_track_request::Body;
    stream.map(|message| match message {
        Ok(pb::UploadMediaTrackRequest {
            body: Some(Body::Chunk(data)),
        }) => Ok(Bytes::from(data)),
        Ok(_) => Err(after_header()),
        Err(status) => Err(interrupted(status)),
    })
}

fn video_chunks(
    stream: Streaming<pb::UploadVideoFileRequest>,
) -> impl Stream<Item = Result<Bytes, ServiceError>> + Unpin + Send {
    use pb::upload_video_file_request::Body;
    stream.map(|message| match message {
        Ok(pb::UploadVideoFileRequest {
            body: Some(Body::Chunk(data)),
        }) => Ok(Bytes::from(data)),
        Ok(_) => Err(after_header()),
        Err(status) => Err(interrupted(status)),
    })
}

#[tonic::async_trait]
impl MediaLibraryService for MediaLibraryApi {
    async fn upload_media_track(
        &self,
        request: Request<Streaming<pb::UploadMediaTrackRequest>>,
    ) -> Result<Response<pb::MediaTrack>, Status> {
        use pb::upload_media_track_request::Body;
        let principal = streaming_principal(&request)?;
        let mut stream = request.into_inner();
        let header = match first_message(&mut stream).await? {
            Ok(Some(pb::UploadMediaTrackRequest {
                body: Some(Body::Header(header)),
            })) => header,
            Ok(_) => return Err(not_header()),
            Err(status) => return Err(interrupted(status).into()),
        };
        super::boundary::check(&header)?;
        let customer_id = required("header.customer_id", &header.customer_id)?.to_owned();
        let track = self
            .control_plane
            .upload_media_track(
                &principal,
                &customer_id,
                upload_of(header.file),
                track_chunks(stream),
            )
            .await?;
        Ok(Response::new(track_to_wire(&track)))
    }

    async fn list_media_tracks(
        &self,
        request: Request<pb::ListMediaTracksRequest>,
    ) -> Result<Response<pb::ListMediaTracksResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let customer_id = required("customer_id", &r.customer_id)?;
        let (tracks, next_page_token) = self
            .control_plane
            .list_media_tracks(&principal, customer_id, &r.page_token, r.page_size)
            .await?;
        Ok(Response::new(pb::ListMediaTracksResponse {
            media_tracks: tracks.iter().map(track_to_wire).collect(),
            next_page_token,
        }))
    }

    async fn get_media_track(
        &self,
        request: Request<pb::GetMediaTrackRequest>,
    ) -> Result<Response<pb::MediaTrack>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        let track = self.control_plane.get_media_track(&principal, id).await?;
        Ok(Response::new(track_to_wire(&track)))
    }

    async fn delete_media_track(
        &self,
        request: Request<pb::DeleteMediaTrackRequest>,
    ) -> Result<Response<pb::DeleteMediaTrackResponse>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        self.control_plane
            .delete_media_track(&principal, id)
            .await?;
        Ok(Response::new(pb::DeleteMediaTrackResponse {}))
    }

    async fn upload_video_file(
        &self,
        request: Request<Streaming<pb::UploadVideoFileRequest>>,
    ) -> Result<Response<pb::VideoFile>, Status> {
        use pb::upload_video_file_request::Body;
        let principal = streaming_principal(&request)?;
        let mut stream = request.into_inner();
        let header = match first_message(&mut stream).await? {
            Ok(Some(pb::UploadVideoFileRequest {
                body: Some(Body::Header(header)),
            })) => header,
            Ok(_) => return Err(not_header()),
            Err(status) => return Err(interrupted(status).into()),
        };
        super::boundary::check(&header)?;
        let service_id = required("header.media_service_id", &header.media_service_id)?.to_owned();
        let video = self
            .control_plane
            .upload_video_file(
                &principal,
                &service_id,
                upload_of(header.file),
                video_chunks(stream),
            )
            .await?;
        Ok(Response::new(video_to_wire(&video)))
    }

    async fn list_video_files(
        &self,
        request: Request<pb::ListVideoFilesRequest>,
    ) -> Result<Response<pb::ListVideoFilesResponse>, Status> {
        let principal = principal(&request)?;
        let r = request.into_inner();
        let service_id = required("media_service_id", &r.media_service_id)?;
        let (videos, next_page_token) = self
            .control_plane
            .list_video_files(&principal, service_id, &r.page_token, r.page_size)
            .await?;
        Ok(Response::new(pb::ListVideoFilesResponse {
            video_files: videos.iter().map(video_to_wire).collect(),
            next_page_token,
        }))
    }

    async fn delete_video_file(
        &self,
        request: Request<pb::DeleteVideoFileRequest>,
    ) -> Result<Response<pb::DeleteVideoFileResponse>, Status> {
        let principal = principal(&request)?;
        let id = required("id", &request.get_ref().id)?;
        self.control_plane.delete_video_file(&principal, id).await?;
        Ok(Response::new(pb::DeleteVideoFileResponse {}))
    }
}
