//! The rkyv codec: [`Rkyv`] stores a value's archive, and a hit is an [`ArchivedValue`] that
//! reads the archived value in place, in the tier's own bytes.
//!
//! # Zero copy and alignment
//!
//! A hit's bytes are where the tier keeps them: on the NVMe tier a slice of a memory-mapped
//! segment, in the RAM tier the buffer that was put. [`ArchivedValue`] validates them once
//! (rkyv's `bytecheck`) and then hands out `&Archived<V>` pointing into them: no copy, no
//! allocation.
//!
//! rkyv reads an archived value in place only at an address aligned for its type, and the
//! record format does not align values (a value follows the key, at any offset). The workspace
//! therefore builds rkyv with its `unaligned` feature (see the root `Cargo.toml`; cargo
//! unifies features, so every crate that uses `cache-core` gets the same format): archived
//! primitives are byte arrays, every derived archived type has alignment 1, and every hit is
//! zero-copy. A hand-written archived type with a larger alignment that arrives misaligned is
//! copied once into an aligned buffer; the copies are counted in [`Rkyv::realigned`]. Types
//! aligned to more than 16 bytes cannot be realigned and are a decode error.

use std::{
    fmt,
    marker::PhantomData,
    ops::Deref,
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use rkyv::{
    Archive, Deserialize, Serialize,
    api::high::{HighDeserializer, HighSerializer, HighValidator},
    bytecheck::CheckBytes,
    rancor,
    ser::allocator::ArenaHandle,
    util::AlignedVec,
};

use crate::codec::{Codec, CodecError, CodecTag};

/// The alignment of the buffer a misaligned archive is copied into.
const REALIGN_TO: usize = 16;

/// A type [`Rkyv`] can store: archivable, serializable into an [`AlignedVec`], its archive
/// checkable by `bytecheck` and deserializable back.
///
/// Implemented for every type that derives `rkyv::Archive`, `rkyv::Serialize` and
/// `rkyv::Deserialize` (whose archived type derives `CheckBytes`, as rkyv's derive does with
/// the `bytecheck` feature); never implement it yourself.
///
/// ```
/// use cache_typed::RkyvValue;
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// struct Row { id: u64, name: String }
/// fn storable<V: RkyvValue>() {}
/// storable::<Row>();
/// ```
pub trait RkyvValue:
    Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Sized
{
}

impl<V> RkyvValue for V where
    V: Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + Deserialize<V, HighDeserializer<rancor::Error>>,
        > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// Values as rkyv archives, read in place on a hit ([`ArchivedValue`]).
///
/// Tag `RKYV`, version 1: rkyv 0.8, little-endian, unaligned, 32-bit relative pointers (the
/// workspace's rkyv features).
///
/// ```
/// use bytes::Bytes;
/// use cache_typed::{Codec, Rkyv};
///
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
/// struct Embedding { model: String, vector: Vec<f32> }
///
/// let codec = Rkyv::new();
/// let value = Embedding { model: "e5".into(), vector: vec![0.25, -1.0] };
/// let bytes = codec.encode(&value)?;
/// let archived = <Rkyv as Codec<Embedding>>::decode(&codec, bytes.clone())?;
/// assert_eq!(archived.model, "e5");
/// assert_eq!(archived.vector[1], -1.0);
/// // The archived value lives in `bytes` itself.
/// let at = &*archived as *const _ as usize;
/// assert!((bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len()).contains(&at));
/// assert_eq!(archived.deserialize()?, value);
/// # Ok::<(), cache_typed::CodecError>(())
/// ```
#[derive(Debug, Default)]
pub struct Rkyv {
    realigned: AtomicU64,
}

impl Rkyv {
    /// A codec with its copy counter at zero.
    ///
    /// ```
    /// assert_eq!(cache_typed::Rkyv::new().realigned(), 0);
    /// ```
    pub fn new() -> Rkyv {
        Rkyv::default()
    }

    /// How many hits were copied into an aligned buffer because their archived type needs
    /// more alignment than their bytes had (never, for types built only from rkyv's own
    /// archived types; see the module docs).
    ///
    /// ```
    /// use cache_typed::{Codec, Rkyv};
    /// let codec = Rkyv::new();
    /// let bytes = codec.encode(&7u64)?;
    /// let unaligned = bytes::Bytes::from([&[0u8][..], &bytes].concat()).slice(1..);
    /// assert_eq!(*<Rkyv as Codec<u64>>::decode(&codec, unaligned)?, 7);
    /// assert_eq!(codec.realigned(), 0); // rkyv's `unaligned` format: alignment 1
    /// # Ok::<(), cache_typed::CodecError>(())
    /// ```
    pub fn realigned(&self) -> u64 {
        self.realigned.load(Ordering::Relaxed)
    }
}

impl<V: RkyvValue> Codec<V> for Rkyv {
    type Output = ArchivedValue<V>;
    const TAG: CodecTag = CodecTag::new(*b"RKYV", 1);

    fn encode(&self, value: &V) -> Result<Bytes, CodecError> {
        rkyv::to_bytes::<rancor::Error>(value)
            .map(Bytes::from_owner)
            .map_err(|e| CodecError::new("rkyv cannot archive the value").with_source(e))
    }

    fn decode(&self, bytes: Bytes) -> Result<ArchivedValue<V>, CodecError> {
        let align = align_of::<V::Archived>();
        let bytes = if (bytes.as_ptr() as usize).is_multiple_of(align) {
            bytes
        } else if align <= REALIGN_TO {
            let mut aligned = AlignedVec::<REALIGN_TO>::with_capacity(bytes.len());
            aligned.extend_from_slice(&bytes);
            self.realigned.fetch_add(1, Ordering::Relaxed);
            Bytes::from_owner(aligned)
        } else {
            return Err(CodecError::new(format!(
                "the archived type needs {align}-byte alignment; at most {REALIGN_TO} is supported"
            )));
        };
        ArchivedValue::new(bytes)
    }

    fn loaded(&self, _value: V, encoded: Bytes) -> Result<ArchivedValue<V>, CodecError> {
        <Rkyv as Codec<V>>::decode(self, encoded)
    }
}

/// A validated rkyv archive of a `V`, read in place: dereferences to `V::Archived` in the
/// bytes it holds (a slice of the tier's storage, kept alive by this handle).
///
/// ```
/// use cache_typed::{ArchivedValue, Codec, Rkyv};
/// let bytes = Rkyv::new().encode(&vec![1u32, 2, 3])?;
/// let v: ArchivedValue<Vec<u32>> = ArchivedValue::new(bytes)?;
/// assert_eq!(v.len(), 3);
/// # Ok::<(), cache_typed::CodecError>(())
/// ```
pub struct ArchivedValue<V: Archive> {
    /// Holds a valid archive of `V` at rkyv's root position, at an address aligned for
    /// `V::Archived` (checked by [`ArchivedValue::new`]). `Bytes` are immutable, so it stays so.
    bytes: Bytes,
    value: PhantomData<fn() -> V>,
}

impl<V: RkyvValue> ArchivedValue<V> {
    /// Validates `bytes` as an archive of `V` (bounds, pointers, enum tags, UTF-8, alignment).
    ///
    /// ```
    /// use cache_typed::ArchivedValue;
    /// assert!(ArchivedValue::<String>::new(bytes::Bytes::from_static(&[0xff; 3])).is_err());
    /// ```
    ///
    /// # Errors
    /// Bytes that are not a valid archive of `V`, or are misaligned for `V::Archived`.
    pub fn new(bytes: Bytes) -> Result<ArchivedValue<V>, CodecError> {
        rkyv::access::<V::Archived, rancor::Error>(&bytes)
            .map_err(|e| CodecError::new("the value is not a valid rkyv archive").with_source(e))?;
        Ok(ArchivedValue { bytes, value: PhantomData })
    }

    /// The bytes holding the archive (the tier's own bytes, unless they were realigned).
    ///
    /// ```
    /// use cache_typed::{ArchivedValue, Codec, Rkyv};
    /// let bytes = Rkyv::new().encode(&5u8)?;
    /// assert_eq!(ArchivedValue::<u8>::new(bytes.clone())?.bytes(), &bytes);
    /// # Ok::<(), cache_typed::CodecError>(())
    /// ```
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Deserializes the archive into an owned `V` (a copy; reading through `Deref` needs none).
    ///
    /// ```
    /// use cache_typed::{ArchivedValue, Codec, Rkyv};
    /// let bytes = Rkyv::new().encode(&"owned".to_owned())?;
    /// assert_eq!(ArchivedValue::<String>::new(bytes)?.deserialize()?, "owned");
    /// # Ok::<(), cache_typed::CodecError>(())
    /// ```
    ///
    /// # Errors
    /// The archive's `Deserialize` failing (rkyv's own types never do).
    pub fn deserialize(&self) -> Result<V, CodecError> {
        rkyv::deserialize::<V, rancor::Error>(&**self)
            .map_err(|e| CodecError::new("rkyv cannot deserialize the value").with_source(e))
    }
}

impl<V: Archive> Deref for ArchivedValue<V> {
    type Target = V::Archived;

    fn deref(&self) -> &V::Archived {
        // SAFETY: `new` validated these very bytes as a `V::Archived` at the root position,
        // including its alignment, and `Bytes` never change, so the root is still valid.
        unsafe { rkyv::access_unchecked::<V::Archived>(&self.bytes) }
    }
}

impl<V: Archive> Clone for ArchivedValue<V> {
    fn clone(&self) -> ArchivedValue<V> {
        ArchivedValue { bytes: self.bytes.clone(), value: PhantomData }
    }
}

impl<V: Archive> fmt::Debug for ArchivedValue<V>
where
    V::Archived: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archived type aligned to 8 bytes, which rkyv's own types never are in the
    /// workspace's `unaligned` format: its misaligned hits are copied.
    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    #[rkyv(attr(repr(align(8))))]
    struct Wide {
        a: u64,
        b: u8,
    }

    fn at_offset(bytes: &Bytes, offset: usize) -> Bytes {
        let mut padded = AlignedVec::<16>::new();
        padded.extend_from_slice(&vec![0; offset]);
        padded.extend_from_slice(bytes);
        Bytes::from_owner(padded).slice(offset..)
    }

    #[test]
    fn derived_types_are_read_in_place_at_any_offset() {
        #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
        struct Row {
            id: u64,
            name: String,
            scores: Vec<f32>,
        }
        let codec = Rkyv::new();
        let row = Row { id: 9, name: "nine".into(), scores: vec![1.5; 10] };
        let encoded = codec.encode(&row).unwrap();
        for offset in 0..8 {
            let bytes = at_offset(&encoded, offset);
            let archived = <Rkyv as Codec<Row>>::decode(&codec, bytes.clone()).unwrap();
            let at = &*archived as *const ArchivedRow as usize;
            let start = bytes.as_ptr() as usize;
            assert!((start..start + bytes.len()).contains(&at), "offset {offset}");
            assert_eq!(archived.bytes().as_ptr(), bytes.as_ptr());
            assert_eq!(archived.deserialize().unwrap(), row);
        }
        assert_eq!(codec.realigned(), 0);
    }

    #[test]
    fn an_aligned_archive_out_of_place_is_copied_once_and_counted() {
        assert_eq!(align_of::<ArchivedWide>(), 8);
        let codec = Rkyv::new();
        let wide = Wide { a: u64::MAX - 1, b: 3 };
        let encoded = codec.encode(&wide).unwrap();
        let aligned = <Rkyv as Codec<Wide>>::decode(&codec, at_offset(&encoded, 8)).unwrap();
        assert_eq!(aligned.deserialize().unwrap(), wide);
        assert_eq!(codec.realigned(), 0);
        let bytes = at_offset(&encoded, 3);
        let copied = <Rkyv as Codec<Wide>>::decode(&codec, bytes.clone()).unwrap();
        assert_eq!(codec.realigned(), 1);
        assert_ne!(copied.bytes().as_ptr(), bytes.as_ptr());
        assert_eq!(copied.deserialize().unwrap(), wide);
        // Without the codec's realignment the bytes are refused, never misread.
        assert!(ArchivedValue::<Wide>::new(bytes).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let codec = Rkyv::new();
        // A bool archive is one byte, 0 or 1.
        assert!(<Rkyv as Codec<bool>>::decode(&codec, Bytes::from_static(&[2])).is_err());
        assert!(*<Rkyv as Codec<bool>>::decode(&codec, Bytes::from_static(&[1])).unwrap());
        // A vector of 65535 u64s at offset 0 runs past an 8-byte buffer.
        let long = Bytes::from_static(&[0, 0, 0, 0, 0xff, 0xff, 0, 0]);
        assert!(<Rkyv as Codec<Vec<u64>>>::decode(&codec, long).is_err());
        assert!(<Rkyv as Codec<Vec<u64>>>::decode(&codec, Bytes::new()).is_err());
    }
}
