//! An object's identity (its metadata and attributes as the origin reported them) and the cache
//! keys derived from it.
//!
//! The identity of `location` is cached under the key `b"m" ‖ location`; chunk `i` of an object
//! is cached under `b"c" ‖ u32_le(len) ‖ location ‖ u32_le(len) ‖ tag ‖ u64_le(chunk size) ‖
//! u64_le(i)`, where the tag names the version of the object (its ETag, else its version, else
//! its size and modification time). A changed object has a new tag, so its old chunks can never
//! be served for it: they are unreachable and age out of the cache (or are removed when this
//! process writes or deletes the object).
//!
//! The encoded identity is little-endian and starts with a version byte; a value that does not
//! decode is treated as a miss.

use std::{
    borrow::Cow,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{BufMut, Bytes, BytesMut};
use cache_core::{Key, Namespace, Timestamp};
use object_store::{Attribute, AttributeValue, Attributes, ObjectMeta, path::Path};

/// Version byte of the encoded identity.
const IDENTITY_VERSION: u8 = 1;
/// Marks an absent optional string.
const NONE: u32 = u32::MAX;

/// What the origin said about an object, and when this process last asked.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The object's metadata, as the origin returned it for its location.
    pub(crate) meta: ObjectMeta,
    /// The object's attributes (content type and the like).
    pub(crate) attributes: Attributes,
    /// When the origin was last asked (the cache's clock).
    pub(crate) checked_at: Timestamp,
}

impl Identity {
    /// The part of the chunk keys that names this version of the object.
    pub(crate) fn tag(&self) -> String {
        let m = &self.meta;
        match (&m.e_tag, &m.version) {
            (Some(e_tag), _) => format!("e{}:{e_tag}", m.size),
            (None, Some(version)) => format!("v{}:{version}", m.size),
            (None, None) => {
                let (secs, nanos) = split_time(m.last_modified.into());
                format!("t{}:{secs}.{nanos:09}", m.size)
            }
        }
    }

    /// Whether `other` names the same version of the object.
    pub(crate) fn same_version(&self, other: &ObjectMeta) -> bool {
        let m = &self.meta;
        m.size == other.size
            && match (&m.e_tag, &m.version) {
                (Some(e_tag), _) => other.e_tag.as_ref() == Some(e_tag),
                (None, Some(version)) => other.version.as_ref() == Some(version),
                (None, None) => other.last_modified == m.last_modified,
            }
    }

    /// The encoded identity, or `None` if an attribute is of a kind this version cannot encode
    /// (such an identity is not cached: every call asks the origin).
    pub(crate) fn encode(&self) -> Option<Bytes> {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(IDENTITY_VERSION);
        out.put_u64_le(self.checked_at.as_millis());
        out.put_u64_le(self.meta.size);
        let (secs, nanos) = split_time(self.meta.last_modified.into());
        out.put_i64_le(secs);
        out.put_u32_le(nanos);
        put_opt(&mut out, self.meta.e_tag.as_deref());
        put_opt(&mut out, self.meta.version.as_deref());
        out.put_u32_le(u32::try_from(self.attributes.len()).ok()?);
        for (attribute, value) in self.attributes.iter() {
            let (code, name) = match attribute {
                Attribute::ContentDisposition => (0, None),
                Attribute::ContentEncoding => (1, None),
                Attribute::ContentLanguage => (2, None),
                Attribute::ContentType => (3, None),
                Attribute::CacheControl => (4, None),
                Attribute::StorageClass => (5, None),
                Attribute::Metadata(name) => (6, Some(name.as_ref())),
                _ => return None,
            };
            out.put_u8(code);
            if let Some(name) = name {
                put_opt(&mut out, Some(name));
            }
            put_opt(&mut out, Some(value.as_ref()));
        }
        Some(out.freeze())
    }

    /// Decodes an identity of the object at `location`; `None` for bytes that do not decode.
    pub(crate) fn decode(location: &Path, bytes: &[u8]) -> Option<Identity> {
        let mut r = Reader(bytes);
        if r.u8()? != IDENTITY_VERSION {
            return None;
        }
        let checked_at = Timestamp::from_millis(r.u64()?);
        let size = r.u64()?;
        let secs = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let nanos = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
        let e_tag = r.opt()?;
        let version = r.opt()?;
        let count = r.u32()?;
        let mut attributes = Attributes::new();
        for _ in 0..count {
            let attribute = match r.u8()? {
                0 => Attribute::ContentDisposition,
                1 => Attribute::ContentEncoding,
                2 => Attribute::ContentLanguage,
                3 => Attribute::ContentType,
                4 => Attribute::CacheControl,
                5 => Attribute::StorageClass,
                6 => Attribute::Metadata(Cow::Owned(r.opt()??)),
                _ => return None,
            };
            attributes.insert(attribute, AttributeValue::from(r.opt()??));
        }
        if !r.0.is_empty() || nanos >= 1_000_000_000 {
            return None;
        }
        let last_modified = join_time(secs, nanos)?.into();
        let meta = ObjectMeta { location: location.clone(), last_modified, size, e_tag, version };
        Some(Identity { meta, attributes, checked_at })
    }
}

/// The key the identity of `location` is cached under; `None` if the location is too long for a
/// key (such objects bypass the cache).
pub(crate) fn identity_key(namespace: &Namespace, location: &Path) -> Option<Key> {
    let mut key = Vec::with_capacity(1 + location.as_ref().len());
    key.push(b'm');
    key.extend_from_slice(location.as_ref().as_bytes());
    namespace.key(key).ok()
}

/// The key chunk `index` (of `chunk_size` bytes) of this version of the object is cached under.
pub(crate) fn chunk_key(
    namespace: &Namespace,
    location: &Path,
    tag: &str,
    chunk_size: u64,
    index: u64,
) -> Option<Key> {
    let location = location.as_ref().as_bytes();
    let mut key = Vec::with_capacity(1 + 4 + location.len() + 4 + tag.len() + 16);
    key.push(b'c');
    key.extend_from_slice(&u32::try_from(location.len()).ok()?.to_le_bytes());
    key.extend_from_slice(location);
    key.extend_from_slice(&u32::try_from(tag.len()).ok()?.to_le_bytes());
    key.extend_from_slice(tag.as_bytes());
    key.extend_from_slice(&chunk_size.to_le_bytes());
    key.extend_from_slice(&index.to_le_bytes());
    namespace.key(key).ok()
}

/// Seconds and nanoseconds since the epoch (negative seconds before it, nanoseconds forward).
fn split_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-secs, 0)
            } else {
                (-secs - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    }
}

fn join_time(secs: i64, nanos: u32) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn put_opt(out: &mut BytesMut, s: Option<&str>) {
    match s {
        None => out.put_u32_le(NONE),
        Some(s) => {
            // Strings longer than 4 GiB cannot be in an object's metadata; clamp defensively.
            let len = u32::try_from(s.len()).unwrap_or(NONE - 1).min(NONE - 1);
            out.put_u32_le(len);
            out.put_slice(&s.as_bytes()[..len as usize]);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// An optional string: `Some(None)` if absent, `None` if the bytes do not decode.
    fn opt(&mut self) -> Option<Option<String>> {
        let len = self.u32()?;
        if len == NONE {
            return Some(None);
        }
        let bytes = self.take(len as usize)?;
        Some(Some(String::from_utf8(bytes.to_vec()).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(e_tag: Option<&str>, secs: i64, nanos: u32) -> Identity {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/x-parquet".into());
        attributes.insert(Attribute::Metadata("owner".into()), "team-a".into());
        Identity {
            meta: ObjectMeta {
                location: Path::from("data/part-0.parquet"),
                last_modified: join_time(secs, nanos).unwrap().into(),
                size: 123_456_789,
                e_tag: e_tag.map(str::to_owned),
                version: Some("v7".to_owned()),
            },
            attributes,
            checked_at: Timestamp::from_millis(42),
        }
    }

    #[test]
    fn identity_round_trips() {
        for (e_tag, secs, nanos) in
            [(Some("\"abc\""), 1_700_000_000, 5), (None, 0, 0), (Some(""), -5, 999_999_999)]
        {
            let id = identity(e_tag, secs, nanos);
            let bytes = id.encode().unwrap();
            let back = Identity::decode(&id.meta.location, &bytes).unwrap();
            assert_eq!(back.meta, id.meta);
            assert_eq!(back.attributes, id.attributes);
            assert_eq!(back.checked_at, id.checked_at);
            assert_eq!(back.tag(), id.tag());
        }
    }

    #[test]
    fn truncated_or_garbled_identity_is_none() {
        let id = identity(Some("\"abc\""), 1_700_000_000, 5);
        let bytes = id.encode().unwrap();
        for len in 0..bytes.len() {
            assert!(Identity::decode(&id.meta.location, &bytes[..len]).is_none(), "{len}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(Identity::decode(&id.meta.location, &longer).is_none());
        let mut wrong_version = bytes.to_vec();
        wrong_version[0] = 2;
        assert!(Identity::decode(&id.meta.location, &wrong_version).is_none());
    }

    #[test]
    fn tags_follow_the_version_of_the_object() {
        let a = identity(Some("\"a\""), 1, 0);
        let b = identity(Some("\"b\""), 1, 0);
        assert_ne!(a.tag(), b.tag());
        assert!(a.same_version(&a.meta));
        assert!(!a.same_version(&b.meta));
        let no_tag_1 = identity(None, 1, 0);
        let mut no_tag_2 = identity(None, 1, 0);
        no_tag_2.meta.version = None;
        assert!(no_tag_1.tag().starts_with('v'));
        assert!(no_tag_2.tag().starts_with('t'));
        let ns = Namespace::new("t").unwrap();
        let loc = Path::from("a/b");
        let k1 = chunk_key(&ns, &loc, &a.tag(), 1 << 20, 0).unwrap();
        let k2 = chunk_key(&ns, &loc, &b.tag(), 1 << 20, 0).unwrap();
        let k3 = chunk_key(&ns, &loc, &a.tag(), 1 << 21, 0).unwrap();
        assert_ne!(k1, k2);
        assert_ne!(k1, k3);
        assert_ne!(identity_key(&ns, &loc).unwrap(), k1);
    }
}
