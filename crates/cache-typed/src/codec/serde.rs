//! The serde codecs: [`Postcard`] (compact binary) and [`Json`] (for other languages and tools).

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::codec::{Codec, CodecError, CodecTag};

/// Any `serde` type as [postcard](https://docs.rs/postcard): a compact, stable binary format
/// (varint integers, no field names). Field order is the format: reordering, adding or removing
/// fields changes the encoding, so bump the typed cache's schema version when you do.
///
/// Tag `PCRD`, version 1 (postcard 1.x's wire format).
///
/// ```
/// use cache_typed::{Codec, Postcard};
/// let bytes = Postcard.encode(&(300u32, "hi".to_owned()))?;
/// assert_eq!(&bytes[..], [0xac, 0x02, 2, b'h', b'i']);
/// assert_eq!(<Postcard as Codec<(u32, String)>>::decode(&Postcard, bytes)?, (300, "hi".to_owned()));
/// # Ok::<(), cache_typed::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl<V: Serialize + DeserializeOwned> Codec<V> for Postcard {
    type Output = V;
    const TAG: CodecTag = CodecTag::new(*b"PCRD", 1);

    fn encode(&self, value: &V) -> Result<Bytes, CodecError> {
        postcard::to_allocvec(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::new("postcard cannot encode the value").with_source(e))
    }

    fn decode(&self, bytes: Bytes) -> Result<V, CodecError> {
        let (value, rest) = postcard::take_from_bytes(&bytes)
            .map_err(|e| CodecError::new("the value is not valid postcard").with_source(e))?;
        if !rest.is_empty() {
            return Err(CodecError::new(format!("{} bytes follow the postcard value", rest.len())));
        }
        Ok(value)
    }

    fn loaded(&self, value: V, _encoded: Bytes) -> Result<V, CodecError> {
        Ok(value)
    }
}

/// Any `serde` type as JSON (`serde_json`): larger and slower than [`Postcard`], readable by
/// any language, and tolerant of added optional fields.
///
/// Tag `JSON`, version 1.
///
/// ```
/// use cache_typed::{Codec, Json};
/// let bytes = Json.encode(&vec![1, 2])?;
/// assert_eq!(&bytes[..], b"[1,2]");
/// # Ok::<(), cache_typed::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    type Output = V;
    const TAG: CodecTag = CodecTag::new(*b"JSON", 1);

    fn encode(&self, value: &V) -> Result<Bytes, CodecError> {
        serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| CodecError::new("the value cannot be encoded as JSON").with_source(e))
    }

    fn decode(&self, bytes: Bytes) -> Result<V, CodecError> {
        serde_json::from_slice(&bytes)
            .map_err(|e| CodecError::new("the value is not valid JSON for its type").with_source(e))
    }

    fn loaded(&self, value: V, _encoded: Bytes) -> Result<V, CodecError> {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Answer {
        text: String,
        tokens: u32,
        logprobs: Vec<f32>,
    }

    fn answer() -> Answer {
        Answer { text: "42".into(), tokens: 1, logprobs: vec![-0.5, -1.25] }
    }

    #[test]
    fn round_trips() {
        let bytes = Postcard.encode(&answer()).unwrap();
        assert_eq!(<Postcard as Codec<Answer>>::decode(&Postcard, bytes).unwrap(), answer());
        let bytes = Json.encode(&answer()).unwrap();
        assert_eq!(&bytes[..], br#"{"text":"42","tokens":1,"logprobs":[-0.5,-1.25]}"#);
        assert_eq!(<Json as Codec<Answer>>::decode(&Json, bytes).unwrap(), answer());
    }

    #[test]
    fn bad_bytes_are_errors() {
        let mut bytes = Postcard.encode(&answer()).unwrap().to_vec();
        bytes.push(0);
        let err = <Postcard as Codec<Answer>>::decode(&Postcard, bytes.into()).unwrap_err();
        assert_eq!(err.message(), "1 bytes follow the postcard value");
        let err =
            <Postcard as Codec<Answer>>::decode(&Postcard, Bytes::from_static(&[5])).unwrap_err();
        assert!(err.to_string().starts_with("the value is not valid postcard"), "{err}");
        assert!(<Json as Codec<Answer>>::decode(&Json, Bytes::from_static(b"{}")).is_err());
    }

    #[test]
    fn json_refuses_what_it_cannot_represent() {
        let map: HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = Json.encode(&map).unwrap_err();
        assert!(err.to_string().starts_with("the value cannot be encoded as JSON"), "{err}");
    }

    #[test]
    fn tags_differ() {
        assert_ne!(<Json as Codec<u8>>::TAG, <Postcard as Codec<u8>>::TAG);
    }
}
