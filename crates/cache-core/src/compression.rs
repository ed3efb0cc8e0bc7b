//! Value compression for the record format: which codec a tier writes with, and the codecs.
//!
//! A persistent tier built with a [`Compression`] other than [`Compression::None`] stores a
//! value compressed when that pays: the value is below [`CHUNKED_MIN_VALUE`] (larger values
//! keep their chunk table, so a range of them stays a verified zero-copy slice), at least
//! [`COMPRESS_MIN_VALUE`] bytes, and the codec saves at least an eighth of it. Any other value
//! is stored raw, so incompressible data (random bytes, already-compressed media, most f32
//! vectors) costs one trial compression and no read-side work. A value of more than 16 KiB is
//! first judged by a 4 KiB sample (2 KiB from its start, 2 KiB from its middle) that LZ4 must
//! shrink by a sixteenth: an incompressible 64 KiB tensor chunk then costs the trial of 4 KiB,
//! not of 64 KiB.
//!
//! The record says per record which codec wrote it (format version 3, `docs/format.md`), so a
//! tier reads back every record whatever its own setting: a directory or a bucket may hold raw,
//! LZ4 and zstd records side by side, and records move between tiers without being re-encoded.
//! A compressed hit decodes into a new buffer; only raw records are zero-copy.

use crate::record::CHUNKED_MIN_VALUE;

/// Values shorter than this are never compressed: the codec's framing would eat the gain.
pub const COMPRESS_MIN_VALUE: usize = 64;
/// Values longer than this are first judged by a sample (see the module docs).
const SAMPLE_ABOVE: usize = 16 * 1024;
/// The sample: this many bytes from the start of the value and as many from its middle.
const SAMPLE_HALF: usize = 2 * 1024;

/// How a persistent tier compresses the values it writes.
///
/// ```
/// use cache_core::{Compression, Entry, Key, Record};
/// let key = Key::new("llm/responses", "prompt-42")?;
/// let json = r#"{"role":"assistant","content":"the answer"}"#.repeat(40);
/// let entry = Entry::new(json.clone());
///
/// let record = Record::encode_with(&key, &entry, Compression::zstd());
/// assert!(record.len() < Record::encoded_len(&key, json.len()) / 4);
/// // Any build reads it back, whatever its own setting.
/// assert_eq!(Record::decode(record)?.value(), json.as_bytes());
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Store every value raw (the default): every hit is a zero-copy slice.
    #[default]
    None,
    /// LZ4 block compression: about 2 GB/s to decode on one core here, a modest ratio. The
    /// choice for values read often.
    Lz4,
    /// Zstandard at the given level (1 to 19; 3 is zstd's own default): a better ratio than LZ4
    /// for text such as JSON, at a higher CPU cost per write and per hit.
    Zstd {
        /// The compression level, clamped to 1..=19.
        level: i32,
    },
}

impl Compression {
    /// Zstandard at level 3.
    pub const fn zstd() -> Compression {
        Compression::Zstd { level: 3 }
    }

    /// The codec a record compressed this way names, or `None` for no compression.
    pub fn codec(self) -> Option<Codec> {
        match self {
            Compression::None => None,
            Compression::Lz4 => Some(Codec::Lz4),
            Compression::Zstd { .. } => Some(Codec::Zstd),
        }
    }

    /// Compresses `value` if this setting, the value's size and the saving say it should be
    /// (see the module docs): the codec and the compressed bytes, or `None` to store it raw.
    pub(crate) fn compress(self, value: &[u8]) -> Option<(Codec, Vec<u8>)> {
        if !(COMPRESS_MIN_VALUE..CHUNKED_MIN_VALUE).contains(&value.len())
            || self == Compression::None
        {
            return None;
        }
        if value.len() > SAMPLE_ABOVE {
            let mid = value.len() / 2;
            let mut sample = [0u8; 2 * SAMPLE_HALF];
            sample[..SAMPLE_HALF].copy_from_slice(&value[..SAMPLE_HALF]);
            sample[SAMPLE_HALF..].copy_from_slice(&value[mid..mid + SAMPLE_HALF]);
            if lz4_flex::block::compress(&sample).len() > sample.len() - sample.len() / 16 {
                return None;
            }
        }
        let out = match self {
            Compression::None => return None,
            Compression::Lz4 => (Codec::Lz4, lz4_flex::block::compress(value)),
            Compression::Zstd { level } => (Codec::Zstd, zstd_compress(value, level.clamp(1, 19))?),
        };
        (out.1.len() <= value.len() - value.len() / 8).then_some(out)
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// Parses `none`, `lz4`, `zstd` or `zstd:LEVEL` (for command lines and config files).
    fn from_str(s: &str) -> Result<Compression, String> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::zstd()),
            _ => match s.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(level)) if (1..=19).contains(&level) => Ok(Compression::Zstd { level }),
                _ => Err(format!(
                    "unknown compression {s:?}: expected none, lz4, zstd or zstd:LEVEL (1 to 19)"
                )),
            },
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

/// The codec that compressed a stored value, as a record's flags name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// An LZ4 block (no frame, no size prefix: the record header holds the decoded length).
    Lz4,
    /// A Zstandard frame.
    Zstd,
}

impl Codec {
    /// Decodes `stored` into exactly `decoded_len` bytes, or `None` if it does not decode to
    /// that length. Never allocates more than `decoded_len` bytes, whatever `stored` holds.
    pub(crate) fn decompress(self, stored: &[u8], decoded_len: usize) -> Option<Vec<u8>> {
        let out = match self {
            Codec::Lz4 => lz4_flex::block::decompress(stored, decoded_len).ok()?,
            Codec::Zstd => ZSTD_DECODER.with_borrow_mut(|d| {
                let d = d.as_mut()?;
                d.decompress(stored, decoded_len).ok()
            })?,
        };
        (out.len() == decoded_len).then_some(out)
    }
}

thread_local! {
    // zstd's contexts hold about 100 KiB (decoding) to a few MiB (encoding) of tables; making
    // one per call costs tens of microseconds, more than decoding a 4 KiB value. One of each
    // per thread, reused (a context failing to build leaves `None`: the value is stored raw,
    // or the read fails as corrupt).
    static ZSTD_DECODER: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
    static ZSTD_ENCODER: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses `value` at `level` with this thread's encoder.
fn zstd_compress(value: &[u8], level: i32) -> Option<Vec<u8>> {
    ZSTD_ENCODER.with_borrow_mut(|slot| {
        if !matches!(slot, Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, encoder) = slot.as_mut()?;
        encoder.compress(value).ok()
    })
}

/// `len` incompressible bytes determined by `seed` (splitmix64): test values that a tier which
/// compresses stores raw.
#[cfg(any(test, feature = "testkit"))]
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed << 32;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompressible_tiny_and_large_values_stay_raw() {
        let random = noise(0, 4096);
        for c in [Compression::Lz4, Compression::zstd()] {
            assert!(c.compress(&random).is_none(), "{c}");
            assert!(c.compress(&[b'a'; COMPRESS_MIN_VALUE - 1]).is_none(), "{c}");
            assert!(c.compress(&vec![b'a'; CHUNKED_MIN_VALUE]).is_none(), "{c}");
            let (codec, out) = c.compress(&[b'a'; 4096]).expect("compressible");
            assert_eq!(Some(codec), c.codec());
            assert_eq!(codec.decompress(&out, 4096).unwrap(), vec![b'a'; 4096]);
            // The wrong length is not a decode.
            assert_eq!(codec.decompress(&out, 4095), None);
            assert_eq!(codec.decompress(&out, 4097), None);
        }
        assert!(Compression::None.compress(&[b'a'; 4096]).is_none());
    }

    #[test]
    fn a_large_value_is_judged_by_its_sample() {
        let text = b"the cache holds the value; ".repeat(2000);
        let mut noisy = noise(0, 40_000);
        noisy.extend_from_slice(&text[..20_000]);
        for c in [Compression::Lz4, Compression::zstd()] {
            assert!(c.compress(&text[..50_000]).is_some(), "{c}");
            assert!(c.compress(&noise(0, 50_000)).is_none(), "{c}");
            // Noise at the start and in the middle: not tried, though the tail would shrink.
            assert!(c.compress(&noisy).is_none(), "{c}");
        }
    }

    #[test]
    fn settings_parse_and_print() {
        for s in ["none", "lz4", "zstd:3", "zstd:19"] {
            assert_eq!(s.parse::<Compression>().unwrap().to_string(), s);
        }
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::zstd()));
        for bad in ["", "gzip", "zstd:0", "zstd:20", "zstd:x"] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
    }
}
