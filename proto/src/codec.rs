//! The protobuf codec of every castplane service, client and server.
//!
//! It is tonic-prost's, except for what a message that does not decode answers: tonic-prost
//! calls that INTERNAL (right for a client reading a broken server), but on a server it is the
//! caller's bad input — bytes that are not protobuf, a string that is not UTF-8 — so it is
//! INVALID_ARGUMENT, on the public and the agent listener alike.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

#[derive(Debug, Clone)]
pub struct CastplaneCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for CastplaneCodec<T, U> {
    fn default() -> Self {
        CastplaneCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for CastplaneCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CastplaneDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        CastplaneDecoder { _pd: PhantomData }
    }
}

#[derive(Debug, Clone)]
pub struct CastplaneDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for CastplaneDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        U::decode(buf).map(Some).map_err(|error| {
            Status::invalid_argument(format!(
                "the message is not a valid {}: {error}",
                short_type::<U>()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// `castplane_proto::v1::CreateResellerRequest` → `CreateResellerRequest`.
fn short_type<U>() -> &'static str {
    let full = std::any::type_name::<U>();
    full.rsplit("::").next().unwrap_or(full)
}
