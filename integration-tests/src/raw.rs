//! Raw gRPC calls: any bytes to any method path, as a broken or hostile client sends them.
//! What the server answers is read back as bytes (or the status), undecoded.

use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Request, Status};

#[derive(Clone, Default)]
pub struct RawCodec;

#[derive(Clone, Default)]
pub struct RawEncoder;

#[derive(Clone, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use bytes::Buf;
        let mut out = vec![0u8; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

async fn prepare(
    channel: Channel,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<
    (
        tonic::client::Grpc<Channel>,
        Request<Vec<u8>>,
        http::uri::PathAndQuery,
    ),
    Status,
> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let mut request = Request::new(body);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not ASCII"))?;
        request.metadata_mut().insert("authorization", value);
    }
    let path = path
        .parse()
        .map_err(|_| Status::internal(format!("bad path {path}")))?;
    Ok((grpc, request, path))
}

/// Sends `body` as the request message of the unary method `path` (`/pkg.Service/Method`),
/// with `token` as the bearer token if given.
pub async fn unary(
    channel: Channel,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<Vec<u8>, Status> {
    let (mut grpc, request, path) = prepare(channel, path, body, token).await?;
    grpc.unary(request, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

/// Like [`unary`] for a server-streaming method: the first message, or the status that ended it.
pub async fn server_streaming_first(
    channel: Channel,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Result<Option<Vec<u8>>, Status> {
    let (mut grpc, request, path) = prepare(channel, path, body, token).await?;
    let mut stream = grpc
        .server_streaming(request, path, RawCodec)
        .await?
        .into_inner();
    stream.message().await
}
