//! Trace readers: ARC `.lis`, libCacheSim oracleGeneral `.bin`, cache2k `.trace` and a plain
//! CSV, each optionally zstd- (`.zst`) or xz- (`.xz`) compressed and decompressed on the fly.

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
    /// cache2k: big-endian 32-bit keys, one per request.
    Cache2k,
    /// Text, one request per line: `id` or `id,size` (a non-numeric first line is a header).
    Csv,
}

/// The size given to requests of traces without sizes (ARC pages are 512 bytes).
pub const DEFAULT_SIZE: u32 = 512;

impl TraceFormat {
    /// Every format, for help texts.
    pub const ALL: [TraceFormat; 4] =
        [TraceFormat::Arc, TraceFormat::OracleGeneral, TraceFormat::Cache2k, TraceFormat::Csv];

    /// The format's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceFormat::Arc => "arc",
            TraceFormat::OracleGeneral => "oracle-general",
            TraceFormat::Cache2k => "cache2k",
            TraceFormat::Csv => "csv",
        }
    }

    /// Guesses the format from a file name (`.lis`, `.oracleGeneral`, `.trace`, `.csv`, with an
    /// optional `.zst`/`.xz` suffix).
    pub fn guess(path: &Path) -> Option<TraceFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.trim_end_matches(".zst").trim_end_matches(".xz");
        if name.ends_with(".lis") {
            Some(TraceFormat::Arc)
        } else if name.contains("oraclegeneral") {
            Some(TraceFormat::OracleGeneral)
        } else if name.ends_with(".trace") {
            Some(TraceFormat::Cache2k)
        } else if name.ends_with(".csv") || name.ends_with(".txt") {
            Some(TraceFormat::Csv)
        } else {
            None
        }
    }

    /// Whether the format carries object sizes.
    pub fn has_sizes(self) -> bool {
        matches!(self, TraceFormat::OracleGeneral | TraceFormat::Csv)
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
        TraceFormat::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            format!("unknown trace format {s:?}: expected arc, oracle-general, cache2k or csv")
        })
    }
}

/// Opens `path`, decompressing by extension (`.zst`, `.xz`).
///
/// # Errors
/// When the file cannot be opened or the decoder cannot start.
pub fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    Ok(match ext {
        "zst" | "zstd" => Box::new(zstd::Decoder::with_buffer(file)?),
        "xz" => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(file)),
        _ => Box::new(file),
    })
}

/// Reads the whole trace at `path` into memory.
///
/// # Errors
/// IO errors, and malformed records (with the line or record number).
pub fn load(path: &Path, format: TraceFormat) -> io::Result<Vec<Request>> {
    let mut input = BufReader::with_capacity(1 << 20, open_decompressed(path)?);
    let mut out = Vec::new();
    match format {
        TraceFormat::Arc => {
            let mut line = String::new();
            let mut n = 0u64;
            while input.read_line(&mut line)? > 0 {
                n += 1;
                let mut fields = line.split_ascii_whitespace();
                if let Some(start) = fields.next() {
                    let start: u64 = parse(start, n)?;
                    let count: u64 = parse(fields.next().unwrap_or("1"), n)?;
                    out.extend((start..start + count).map(|id| Request { id, size: DEFAULT_SIZE }));
                }
                line.clear();
            }
        }
        TraceFormat::OracleGeneral => {
            let mut rec = [0u8; 24];
            loop {
                match input.read_exact(&mut rec) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
                let id = u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes"));
                let size = u32::from_le_bytes(rec[12..16].try_into().expect("4 bytes"));
                out.push(Request { id, size });
            }
        }
        TraceFormat::Cache2k => {
            let mut rec = [0u8; 4];
            loop {
                match input.read_exact(&mut rec) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
                out.push(Request { id: u64::from(u32::from_be_bytes(rec)), size: DEFAULT_SIZE });
            }
        }
        TraceFormat::Csv => {
            let mut line = String::new();
            let mut n = 0u64;
            while input.read_line(&mut line)? > 0 {
                n += 1;
                let mut fields = line.trim().split([',', ' ', '\t']).filter(|f| !f.is_empty());
                if let Some(id) = fields.next() {
                    match id.parse::<u64>() {
                        Ok(id) => {
                            let size = match fields.next() {
                                Some(s) => parse(s, n)?,
                                None => DEFAULT_SIZE,
                            };
                            out.push(Request { id, size });
                        }
                        Err(_) if n == 1 => {} // a header
                        Err(_) => return Err(bad(n, id)),
                    }
                }
                line.clear();
            }
        }
    }
    Ok(out)
}

fn parse<T: FromStr>(s: &str, line: u64) -> io::Result<T> {
    s.parse().map_err(|_| bad(line, s))
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

    #[test]
    fn csv_and_guess() {
        let dir = std::env::temp_dir().join(format!("cache-bench-trace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.csv");
        std::fs::write(&p, "id,size\n1,100\n2\n1,100\n").unwrap();
        let t = load(&p, TraceFormat::Csv).unwrap();
        assert_eq!(
            t,
            [
                Request { id: 1, size: 100 },
                Request { id: 2, size: DEFAULT_SIZE },
                Request { id: 1, size: 100 }
            ]
        );
        assert_eq!(TraceFormat::guess(Path::new("a/OLTP.lis.zst")), Some(TraceFormat::Arc));
        assert_eq!(TraceFormat::guess(Path::new("web07.trace.xz")), Some(TraceFormat::Cache2k));
        assert_eq!(
            TraceFormat::guess(Path::new("x.oracleGeneral.bin")),
            Some(TraceFormat::OracleGeneral)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
