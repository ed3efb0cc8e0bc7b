//! Trace readers, each optionally zstd- (`.zst`), xz- (`.xz`) or gzip- (`.gz`) compressed and
//! decompressed on the fly:
//!
//! | format | layout | source |
//! |---|---|---|
//! | `arc` | text `start_block n_blocks 0 req_no`, expanded to `n` keys of 512 bytes | ARC paper traces (`.lis`) |
//! | `oracle-general` | packed little-endian `{u32 time; u64 id; u32 size; i64 next}` | libCacheSim, cacheMon datasets |
//! | `cache2k` / `u32be` | big-endian 32-bit keys | cache2k traces; Caffeine's `cloud_physics` (w106) reader |
//! | `u64be` | big-endian 64-bit keys | Caffeine's `scarab` and `corda` readers |
//! | `csv` | delimited text with a header, key and size columns chosen by [`CsvOptions`] | any |
//! | `txt` | one key per line | any |
//! | `lirs` | one key per line, lines starting with `*` skipped | LIRS traces |
//! | `adapt-size` | `time id size`, whitespace separated | AdaptSize / webcachesim |
//! | `meta-kv` | CSV with a header naming `key`, `op`, `size`, `op_count`, `key_size` | Meta's CacheLib KV traces |
//!
//! Keys that are not decimal integers (string keys, hex ids) are hashed to `u64` with XXH3-64,
//! a fixed algorithm, so a trace always maps to the same ids.

use std::{
    fmt,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::Path,
    str::FromStr,
};

/// One request of a trace: an object id and, where the trace has sizes, its size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The object's id.
    pub id: u64,
    /// The object's size in bytes (the trace's fixed or default size where it has none).
    pub size: u32,
}

/// The on-disk format of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceFormat {
    /// ARC `.lis`: `start_block n_blocks 0 req_no` per line, expanded to `n` keys of 512 bytes.
    Arc,
    /// libCacheSim oracleGeneral: packed little-endian 24-byte records.
    OracleGeneral,
    /// cache2k: big-endian 32-bit keys, one per request (the same layout as `u32be`).
    Cache2k,
    /// Big-endian unsigned 32-bit keys (Caffeine's `cloud_physics` w106 reader).
    U32Be,
    /// Big-endian 64-bit keys (Caffeine's `scarab` and `corda` readers).
    U64Be,
    /// Delimited text with a key column and an optional size column ([`CsvOptions`]).
    Csv,
    /// One key per line.
    Txt,
    /// LIRS: one key per line; lines starting with `*` are checkpoints and are skipped.
    Lirs,
    /// AdaptSize: `time id size` per line; the same id with another size is another object.
    AdaptSize,
    /// Meta's CacheLib KV traces: CSV with a header naming `key`, `op`, `size`, `op_count` and
    /// `key_size` (in any order, other columns ignored); `GET` rows only, each repeated
    /// `op_count` times, weighing `size + key_size` bytes.
    MetaKv,
}

/// The size given to requests of traces without sizes (ARC pages are 512 bytes).
pub const DEFAULT_SIZE: u32 = 512;

impl TraceFormat {
    /// Every format, for help texts.
    pub const ALL: [TraceFormat; 10] = [
        TraceFormat::Arc,
        TraceFormat::OracleGeneral,
        TraceFormat::Cache2k,
        TraceFormat::U32Be,
        TraceFormat::U64Be,
        TraceFormat::Csv,
        TraceFormat::Txt,
        TraceFormat::Lirs,
        TraceFormat::AdaptSize,
        TraceFormat::MetaKv,
    ];

    /// The format's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Arc => "arc",
            TraceFormat::OracleGeneral => "oracle-general",
            TraceFormat::Cache2k => "cache2k",
            TraceFormat::U32Be => "u32be",
            TraceFormat::U64Be => "u64be",
            TraceFormat::Csv => "csv",
            TraceFormat::Txt => "txt",
            TraceFormat::Lirs => "lirs",
            TraceFormat::AdaptSize => "adapt-size",
            TraceFormat::MetaKv => "meta-kv",
        }
    }

    /// Guesses the format from a file name, ignoring a `.zst`/`.xz`/`.gz` suffix: `.lis` (ARC),
    /// `oracleGeneral` (libCacheSim), `.trace` (cache2k), `kvcache*.csv` (Meta KV), `.csv`, `.txt`.
    /// Other layouts (LIRS, AdaptSize and the big-endian streams also end in `.trace`) need
    /// `--format`.
    pub fn guess(path: &Path) -> Option<TraceFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.trim_end_matches(".zst").trim_end_matches(".xz").trim_end_matches(".gz");
        if name.ends_with(".lis") {
            Some(TraceFormat::Arc)
        } else if name.contains("oraclegeneral") {
            Some(TraceFormat::OracleGeneral)
        } else if name.ends_with(".trace") {
            Some(TraceFormat::Cache2k)
        } else if name.ends_with(".csv") && name.contains("kvcache") {
            Some(TraceFormat::MetaKv)
        } else if name.ends_with(".csv") {
            Some(TraceFormat::Csv)
        } else if name.ends_with(".txt") {
            Some(TraceFormat::Txt)
        } else {
            None
        }
    }

    /// Whether the format carries object sizes.
    pub fn has_sizes(self) -> bool {
        matches!(
            self,
            TraceFormat::OracleGeneral
                | TraceFormat::Csv
                | TraceFormat::AdaptSize
                | TraceFormat::MetaKv
        )
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TraceFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<TraceFormat, String> {
        let alias = match s {
            "oraclegeneral" | "oracle" => Some(TraceFormat::OracleGeneral),
            "w106" | "cloud-physics" => Some(TraceFormat::U32Be),
            "scarab" | "corda" => Some(TraceFormat::U64Be),
            "adaptsize" => Some(TraceFormat::AdaptSize),
            "cachelib" | "kvcache" => Some(TraceFormat::MetaKv),
            _ => None,
        };
        alias.or_else(|| TraceFormat::ALL.into_iter().find(|f| f.as_str() == s)).ok_or_else(|| {
            format!(
                "unknown trace format {s:?}: expected one of {}",
                TraceFormat::ALL.map(TraceFormat::as_str).join(", ")
            )
        })
    }
}

/// Column choice of the `csv` format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// 0-based column of the key.
    pub key_col: usize,
    /// 0-based column of the size (`None`: every object weighs [`DEFAULT_SIZE`]); a line
    /// without that column also gets [`DEFAULT_SIZE`].
    pub size_col: Option<usize>,
    /// The field delimiter.
    pub delimiter: u8,
    /// Whether the first line is a header: `None` guesses (a header when its size field, or its
    /// key field without a size column, is not a number).
    pub header: Option<bool>,
}

impl Default for CsvOptions {
    /// `id[,size]` with a guessed header.
    fn default() -> CsvOptions {
        CsvOptions { key_col: 0, size_col: Some(1), delimiter: b',', header: None }
    }
}

/// Opens `path`, decompressing by extension (`.zst`, `.xz`, `.gz`).
///
/// # Errors
/// When the file cannot be opened or the decoder cannot start.
pub fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    Ok(match ext {
        "zst" | "zstd" => Box::new(zstd::Decoder::with_buffer(file)?),
        "xz" => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(file)),
        "gz" => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        _ => Box::new(file),
    })
}

/// Reads the whole trace at `path` into memory (CSV with [`CsvOptions::default`]).
///
/// # Errors
/// IO errors, and malformed records (with the line or record number).
pub fn load(path: &Path, format: TraceFormat) -> io::Result<Vec<Request>> {
    load_with(path, format, &CsvOptions::default())
}

/// [`load`] with the CSV column choice.
///
/// # Errors
/// As for [`load`].
pub fn load_with(path: &Path, format: TraceFormat, csv: &CsvOptions) -> io::Result<Vec<Request>> {
    parse(open_decompressed(path)?, format, csv)
}

/// Parses a whole trace from `input`.
///
/// # Errors
/// IO errors, and malformed records (with the line or record number).
pub fn parse(input: impl Read, format: TraceFormat, csv: &CsvOptions) -> io::Result<Vec<Request>> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    let mut out = Vec::new();
    match format {
        TraceFormat::Arc => lines(&mut input, |n, line| {
            let mut fields = line.split_ascii_whitespace();
            if let Some(start) = fields.next() {
                let start: u64 = num(start, n)?;
                let count: u64 = num(fields.next().unwrap_or("1"), n)?;
                out.extend((start..start + count).map(|id| Request { id, size: DEFAULT_SIZE }));
            }
            Ok(())
        })?,
        TraceFormat::OracleGeneral => records::<24>(&mut input, |rec| {
            let id = u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes"));
            let size = u32::from_le_bytes(rec[12..16].try_into().expect("4 bytes"));
            out.push(Request { id, size });
        })?,
        TraceFormat::Cache2k | TraceFormat::U32Be => records::<4>(&mut input, |rec| {
            out.push(Request { id: u64::from(u32::from_be_bytes(*rec)), size: DEFAULT_SIZE });
        })?,
        TraceFormat::U64Be => records::<8>(&mut input, |rec| {
            out.push(Request { id: u64::from_be_bytes(*rec), size: DEFAULT_SIZE });
        })?,
        TraceFormat::Txt | TraceFormat::Lirs => {
            let lirs = format == TraceFormat::Lirs;
            lines(&mut input, |_, line| {
                let key = line.trim();
                if key.is_empty() || (lirs && key.starts_with('*')) {
                    return Ok(());
                }
                out.push(Request { id: key_id(key), size: DEFAULT_SIZE });
                Ok(())
            })?;
        }
        TraceFormat::Csv => {
            let d = char::from(csv.delimiter);
            lines(&mut input, |n, line| {
                let line = line.trim_end_matches(['\r', '\n']);
                if line.trim().is_empty() {
                    return Ok(());
                }
                let fields: Vec<&str> = line.split(d).map(str::trim).collect();
                let key = fields.get(csv.key_col).copied();
                let size = csv.size_col.and_then(|c| fields.get(c).copied());
                if n == 1 {
                    let header = csv.header.unwrap_or_else(|| match (csv.size_col, size) {
                        (Some(_), Some(s)) => s.parse::<u64>().is_err(),
                        _ => key.is_none_or(|k| !k.bytes().any(|b| b.is_ascii_digit())),
                    });
                    if header {
                        return Ok(());
                    }
                }
                let Some(key) = key.filter(|k| !k.is_empty()) else {
                    return Err(bad(n, line));
                };
                let size = match size {
                    Some(s) if !s.is_empty() => size_of(num(s, n)?),
                    _ => DEFAULT_SIZE,
                };
                out.push(Request { id: key_id(key), size });
                Ok(())
            })?;
        }
        TraceFormat::AdaptSize => lines(&mut input, |n, line| {
            let mut fields = line.split_ascii_whitespace();
            let (Some(_time), Some(id), Some(size)) = (fields.next(), fields.next(), fields.next())
            else {
                return if line.trim().is_empty() { Ok(()) } else { Err(bad(n, line)) };
            };
            let size: u64 = num(size, n)?;
            // The same id with another size is another object (as AdaptSize's simulator).
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&key_id(id).to_le_bytes());
            key[8..].copy_from_slice(&size.to_le_bytes());
            out.push(Request { id: xxhash_rust::xxh3::xxh3_64(&key), size: size_of(size) });
            Ok(())
        })?,
        TraceFormat::MetaKv => {
            let mut cols: Option<[usize; 5]> = None;
            lines(&mut input, |n, line| {
                let line = line.trim_end_matches(['\r', '\n']);
                if line.trim().is_empty() {
                    return Ok(());
                }
                let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                let Some(c) = cols else {
                    let find = |name: &str| fields.iter().position(|f| *f == name);
                    match (
                        find("key"),
                        find("op"),
                        find("size"),
                        find("op_count"),
                        find("key_size"),
                    ) {
                        (Some(k), Some(o), Some(s), Some(c), Some(ks)) => {
                            cols = Some([k, o, s, c, ks]);
                            return Ok(());
                        }
                        _ => {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "line {n}: a Meta KV trace starts with a header naming key, \
                                     op, size, op_count and key_size, not {line:?}"
                                ),
                            ));
                        }
                    }
                };
                let get = |i: usize| fields.get(c[i]).copied().ok_or_else(|| bad(n, line));
                if get(1)? != "GET" {
                    return Ok(());
                }
                let size: u64 = num(get(2)?, n)?;
                let key_size: u64 = num(get(4)?, n)?;
                let count: u64 = num(get(3)?, n)?;
                let req = Request { id: key_id(get(0)?), size: size_of(size + key_size) };
                out.extend(std::iter::repeat_n(req, usize::try_from(count).unwrap_or(0)));
                Ok(())
            })?;
        }
    }
    Ok(out)
}

/// A decimal key as is, anything else hashed with XXH3-64.
pub fn key_id(key: &str) -> u64 {
    key.parse::<u64>()
        .or_else(|_| key.parse::<i64>().map(|k| k as u64))
        .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_64(key.as_bytes()))
}

fn size_of(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Calls `f` with each line (1-based number, text).
fn lines(
    input: &mut impl BufRead,
    mut f: impl FnMut(u64, &str) -> io::Result<()>,
) -> io::Result<()> {
    let mut line = String::new();
    let mut n = 0u64;
    while input.read_line(&mut line)? > 0 {
        n += 1;
        f(n, &line)?;
        line.clear();
    }
    Ok(())
}

/// Calls `f` with each fixed-size record; a truncated last record is an error.
fn records<const N: usize>(input: &mut impl Read, mut f: impl FnMut(&[u8; N])) -> io::Result<()> {
    let mut rec = [0u8; N];
    let mut n = 0u64;
    loop {
        let mut got = 0;
        while got < N {
            match input.read(&mut rec[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == 0 {
            return Ok(());
        }
        if got < N {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("record {}: truncated ({got} of {N} bytes)", n + 1),
            ));
        }
        n += 1;
        f(&rec);
    }
}

fn num<T: FromStr>(s: &str, line: u64) -> io::Result<T> {
    s.trim().parse().map_err(|_| bad(line, s))
}

fn bad(line: u64, field: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("line {line}: cannot parse {field:?}"))
}

/// Requests, unique ids and total requested bytes of a trace.
pub fn summary(trace: &[Request]) -> (usize, usize, u64) {
    let unique: std::collections::HashSet<u64> = trace.iter().map(|r| r.id).collect();
    (trace.len(), unique.len(), trace.iter().map(|r| u64::from(r.size)).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: u64, size: u32) -> Request {
        Request { id, size }
    }

    fn p(bytes: &[u8], f: TraceFormat) -> Vec<Request> {
        parse(bytes, f, &CsvOptions::default()).unwrap()
    }

    #[test]
    fn guess_by_name() {
        let g = |n| TraceFormat::guess(Path::new(n));
        assert_eq!(g("a/OLTP.lis.zst"), Some(TraceFormat::Arc));
        assert_eq!(g("OLTP.lis.gz"), Some(TraceFormat::Arc));
        assert_eq!(g("web07.trace.xz"), Some(TraceFormat::Cache2k));
        assert_eq!(g("x.oracleGeneral.bin"), Some(TraceFormat::OracleGeneral));
        assert_eq!(g("x.oracleGeneral.zst"), Some(TraceFormat::OracleGeneral));
        assert_eq!(g("kvcache_traces_1.csv"), Some(TraceFormat::MetaKv));
        assert_eq!(g("t.csv"), Some(TraceFormat::Csv));
        assert_eq!(g("t.txt"), Some(TraceFormat::Txt));
        assert_eq!(g("t.bin"), None);
        assert_eq!("scarab".parse::<TraceFormat>(), Ok(TraceFormat::U64Be));
        assert_eq!("w106".parse::<TraceFormat>(), Ok(TraceFormat::U32Be));
        for f in TraceFormat::ALL {
            assert_eq!(f.as_str().parse::<TraceFormat>(), Ok(f));
        }
    }

    #[test]
    fn arc_lines_expand_to_blocks() {
        assert_eq!(
            p(b"10 2 0 1\n7 1 0 2\n", TraceFormat::Arc),
            [r(10, 512), r(11, 512), r(7, 512)]
        );
    }

    #[test]
    fn oracle_general_records() {
        let mut b = Vec::new();
        for (t, id, size, next) in
            [(1u32, 42u64, 4096u32, 1i64), (2, 42, 4096, -1), (3, 7, 512, -1)]
        {
            b.extend(t.to_le_bytes());
            b.extend(id.to_le_bytes());
            b.extend(size.to_le_bytes());
            b.extend(next.to_le_bytes());
        }
        assert_eq!(p(&b, TraceFormat::OracleGeneral), [r(42, 4096), r(42, 4096), r(7, 512)]);
        // A truncated record is an error, not a silent end.
        assert!(parse(&b[..30], TraceFormat::OracleGeneral, &CsvOptions::default()).is_err());
    }

    #[test]
    fn big_endian_streams() {
        let b = [0u8, 0, 1, 2, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(p(&b, TraceFormat::Cache2k), [r(258, 512), r(0xffff_ffff, 512)]);
        assert_eq!(p(&b, TraceFormat::U32Be), p(&b, TraceFormat::Cache2k));
        assert_eq!(p(&b, TraceFormat::U64Be), [r(0x0000_0102_ffff_ffff, 512)]);
    }

    #[test]
    fn csv_columns_header_and_delimiter() {
        // The old form: `id[,size]` with a header.
        assert_eq!(
            p(b"id,size\n1,100\n2\n1,100\n", TraceFormat::Csv),
            [r(1, 100), r(2, DEFAULT_SIZE), r(1, 100)]
        );
        // Key in column 2, size in column 3, semicolons, string keys hashed.
        let opts =
            CsvOptions { key_col: 1, size_col: Some(2), delimiter: b';', header: Some(true) };
        let t = parse(
            &b"time;key;size\n0;alpha;10\n1;beta;20\n2;alpha;10\n"[..],
            TraceFormat::Csv,
            &opts,
        )
        .unwrap();
        assert_eq!(t[0], t[2]);
        assert_eq!(t[0].size, 10);
        assert_eq!(t[0].id, xxhash_rust::xxh3::xxh3_64(b"alpha"));
        assert_ne!(t[0].id, t[1].id);
        // No header: the first line is data.
        let opts = CsvOptions { key_col: 0, size_col: None, delimiter: b',', header: Some(false) };
        assert_eq!(parse(&b"5\n6\n"[..], TraceFormat::Csv, &opts).unwrap(), [r(5, 512), r(6, 512)]);
        assert!(parse(&b"id,size\n1,x\n"[..], TraceFormat::Csv, &CsvOptions::default()).is_err());
    }

    #[test]
    fn txt_and_lirs() {
        let t = p(b"1\nkey-a\n\n1\nkey-a\n", TraceFormat::Txt);
        assert_eq!(t.len(), 4);
        assert_eq!((t[0], t[1]), (t[2], t[3]));
        assert_eq!(t[0], r(1, 512));
        assert_eq!(t[1].id, key_id("key-a"));
        // LIRS: `*` lines are checkpoints.
        assert_eq!(
            p(b"3\n*\n4\n* checkpoint\n3\n", TraceFormat::Lirs),
            [r(3, 512), r(4, 512), r(3, 512)]
        );
    }

    #[test]
    fn adapt_size_treats_a_resized_id_as_another_object() {
        let t = p(b"1 100 4096\n2 100 4096\n3 100 8192\n4 7 10\n", TraceFormat::AdaptSize);
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], t[1]);
        assert_ne!(t[0].id, t[2].id);
        assert_eq!((t[0].size, t[2].size, t[3].size), (4096, 8192, 10));
    }

    #[test]
    fn meta_kv_both_layouts() {
        // kvcache/202206 and 202210: key,op,size,op_count,key_size.
        let t = p(
            b"key,op,size,op_count,key_size\n1668757755,SET,82,1,40\n1668757755,GET,0,1,40\n\
              1665497896,GET,169,3,78\n",
            TraceFormat::MetaKv,
        );
        assert_eq!(
            t,
            [
                r(1_668_757_755, 40),
                r(1_665_497_896, 247),
                r(1_665_497_896, 247),
                r(1_665_497_896, 247)
            ]
        );
        // kvcache/202401: more columns, another order, hex keys.
        let t = p(
            b"op_time,key,key_size,op,op_count,size,cache_hits,ttl,usecase,sub_usecase\n\
              604038471,82131353f9ddc8c6,48,GET,2,87,1,0,366387042,3003229276\n\
              604038473,828769c1e1ce3a29,67,SET,1,65,0,0,1,1\n",
            TraceFormat::MetaKv,
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t[0], r(key_id("82131353f9ddc8c6"), 135));
        assert!(parse(&b"a,b\n1,2\n"[..], TraceFormat::MetaKv, &CsvOptions::default()).is_err());
    }

    #[test]
    fn compressed_files_are_read_by_extension() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let text = b"1 1 0 0\n2 1 0 0\n";
        let gz = dir.path().join("t.lis.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        let zst = dir.path().join("t.lis.zst");
        std::fs::write(&zst, zstd::encode_all(&text[..], 3).unwrap()).unwrap();
        let want = [r(1, 512), r(2, 512)];
        assert_eq!(load(&gz, TraceFormat::Arc).unwrap(), want);
        assert_eq!(load(&zst, TraceFormat::Arc).unwrap(), want);
    }
}
