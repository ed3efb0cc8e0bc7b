//! The [`Codec`] trait, the [`CodecTag`] a codec stamps on every entry, and [`CodecError`].

use std::{error::Error as StdError, fmt};

use bytes::Bytes;

mod rkyv;
mod serde;

pub use self::{
    rkyv::{ArchivedValue, Rkyv, RkyvValue},
    serde::{Json, Postcard},
};

/// Turns values of type `V` into the bytes a tier stores, and stored bytes back into what a
/// hit returns.
///
/// A codec names its encoding with a [`CodecTag`] (a four-byte identifier and a format
/// version). [`TypedCache`](crate::TypedCache) stores the tag in the entry's user tag
/// ([`EntryMeta::version`](cache_core::EntryMeta::version)) and treats an entry with any other
/// tag as a miss, so changing the codec or its version never turns old entries into decode
/// errors. Change [`Codec::TAG`]'s version whenever the bytes of an encoded value may change.
///
/// # Implementing
///
/// ```
/// use bytes::Bytes;
/// use cache_typed::{Codec, CodecError, CodecTag};
///
/// /// UTF-8 strings as they are.
/// #[derive(Debug)]
/// struct Utf8;
///
/// impl Codec<String> for Utf8 {
///     type Output = String;
///     const TAG: CodecTag = CodecTag::new(*b"UTF8", 1);
///     fn encode(&self, value: &String) -> Result<Bytes, CodecError> {
///         Ok(Bytes::copy_from_slice(value.as_bytes()))
///     }
///     fn decode(&self, bytes: Bytes) -> Result<String, CodecError> {
///         String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::new("not UTF-8").with_source(e))
///     }
///     fn loaded(&self, value: String, _encoded: Bytes) -> Result<String, CodecError> {
///         Ok(value)
///     }
/// }
///
/// let bytes = Utf8.encode(&"hi".to_owned())?;
/// assert_eq!(Utf8.decode(bytes)?, "hi");
/// # Ok::<(), CodecError>(())
/// ```
pub trait Codec<V>: Send + Sync + fmt::Debug + 'static {
    /// What a hit returns: `V` for the serde codecs, a zero-copy [`ArchivedValue`] for
    /// [`Rkyv`].
    type Output;

    /// The encoding's identity, stored with every entry.
    const TAG: CodecTag;

    /// Encodes `value`.
    ///
    /// # Errors
    /// A value the encoding cannot represent (for JSON, a map whose keys are not strings).
    fn encode(&self, value: &V) -> Result<Bytes, CodecError>;

    /// Decodes stored bytes that carry this codec's tag.
    ///
    /// # Errors
    /// Bytes that are not a valid encoding of `V`.
    fn decode(&self, bytes: Bytes) -> Result<Self::Output, CodecError>;

    /// What [`TypedCache::get_or_load`](crate::TypedCache::get_or_load) returns for a value it
    /// just loaded and encoded as `encoded`: the value itself where `Output` is `V`, else
    /// `decode(encoded)`.
    ///
    /// # Errors
    /// As for [`Codec::decode`].
    fn loaded(&self, value: V, encoded: Bytes) -> Result<Self::Output, CodecError>;
}

/// The identity of an encoding: a four-byte identifier and a format version.
///
/// Stored as the entry's user tag, together with the typed cache's schema version, as one
/// `u64`: identifier (big-endian, so the tag reads as ASCII in hex) ‖ version (`u16`) ‖ schema
/// version (`u16`).
///
/// ```
/// use cache_typed::CodecTag;
/// let tag = CodecTag::new(*b"JSON", 1);
/// assert_eq!(tag.user_tag(3), 0x4a53_4f4e_0001_0003);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodecTag {
    id: [u8; 4],
    version: u16,
}

impl CodecTag {
    /// A codec's identifier and format version.
    ///
    /// ```
    /// use cache_typed::CodecTag;
    /// const MINE: CodecTag = CodecTag::new(*b"MINE", 2);
    /// assert_eq!(MINE.id(), *b"MINE");
    /// ```
    pub const fn new(id: [u8; 4], version: u16) -> CodecTag {
        CodecTag { id, version }
    }

    /// The four-byte identifier.
    ///
    /// ```
    /// use cache_typed::{Codec, Json};
    /// assert_eq!(<Json as Codec<u32>>::TAG.id(), *b"JSON");
    /// ```
    pub const fn id(self) -> [u8; 4] {
        self.id
    }

    /// The format version.
    ///
    /// ```
    /// use cache_typed::CodecTag;
    /// assert_eq!(CodecTag::new(*b"MINE", 2).version(), 2);
    /// ```
    pub const fn version(self) -> u16 {
        self.version
    }

    /// The user tag stored with an entry of this encoding and `schema` version.
    ///
    /// ```
    /// use cache_typed::CodecTag;
    /// let tag = CodecTag::new(*b"MINE", 2);
    /// assert_ne!(tag.user_tag(1), tag.user_tag(2));
    /// ```
    pub const fn user_tag(self, schema: u16) -> u64 {
        ((u32::from_be_bytes(self.id) as u64) << 32) | ((self.version as u64) << 16) | schema as u64
    }
}

/// Why a codec could not encode or decode a value.
///
/// ```
/// use cache_typed::CodecError;
/// let e = CodecError::new("truncated");
/// assert_eq!(e.to_string(), "truncated");
/// ```
#[derive(Debug)]
pub struct CodecError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl CodecError {
    /// An error with a message (lowercase, no trailing period).
    ///
    /// ```
    /// use cache_typed::CodecError;
    /// assert_eq!(CodecError::new("bad").message(), "bad");
    /// ```
    pub fn new(message: impl Into<String>) -> CodecError {
        CodecError { message: message.into(), source: None }
    }

    /// Attaches the underlying error.
    ///
    /// ```
    /// use std::error::Error;
    /// use cache_typed::CodecError;
    /// let io = std::io::Error::other("inner");
    /// assert!(CodecError::new("outer").with_source(io).source().is_some());
    /// ```
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> CodecError {
        self.source = Some(Box::new(source));
        self
    }

    /// The message, without the source's.
    ///
    /// ```
    /// use cache_typed::CodecError;
    /// assert_eq!(CodecError::new("bad").message(), "bad");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for CodecError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}
