//! The fuzz campaign: an in-process, structure-aware fuzzer (no nightly toolchain needed).
//!
//! Two kinds of targets:
//!
//! - **Decoders.** Valid encoded records (`cache_core::Record`) and NVMe on-disk files (segment
//!   images built with `cache_l2_nvme::fuzzing::segment_image`, plus the segment files, index
//!   snapshot and namespace-clear log of a real tier) are mutated — bit flips, byte sets,
//!   header-field overwrites with boundary values, truncation, extension, insertions, deletions
//!   and splices between inputs — and, half of the time, their checksums are recomputed so the
//!   mutation reaches the checks behind the checksum (lengths, metadata archive, UTF-8). Each
//!   input goes to the decoders under `catch_unwind`. An input that differs from a valid record
//!   by one bit must be refused (the checksum catches it): an accepted one is a failure.
//! - **Operation sequences** (`ops`): random get/put/remove/clear_namespace/flush/... with
//!   random keys, namespaces, sizes and TTLs on a manual clock, against each tier and the tiered
//!   cache, checked against a map model.
//!
//! A crash is a panic caught at an execution (the panic hook records the message), or an
//! `Internal` error from a tier.

mod ops;

use std::{
    panic::{self, AssertUnwindSafe},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use cache_core::{
    Compression, Entry, HEADER_LEN, Key, Record, RecordHead, RecordHeader, Timestamp, Verify,
};
use cache_l2_nvme::fuzzing;
use rand::{Rng, SeedableRng, rngs::StdRng};
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    Ctx,
    report::{Section, Table},
};

/// The last panic message seen by the quiet hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

type Hook = Box<dyn Fn(&panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Replaces the panic hook with one that records the message instead of printing it, and puts
/// the previous hook back when dropped.
pub(crate) struct QuietPanics {
    previous: Option<Hook>,
}

impl QuietPanics {
    pub(crate) fn install() -> QuietPanics {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(|info| {
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(info.to_string());
            }
        }));
        QuietPanics { previous: Some(previous) }
    }

    /// The message of the last panic, if any, cleared.
    pub(crate) fn take() -> Option<String> {
        LAST_PANIC.lock().ok().and_then(|mut l| l.take())
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        let _ = panic::take_hook();
        if let Some(previous) = self.previous.take() {
            panic::set_hook(previous);
        }
    }
}

/// What one target did.
#[derive(Debug, Default, Clone)]
pub(crate) struct TargetStats {
    pub(crate) name: String,
    pub(crate) execs: u64,
    pub(crate) crashes: u64,
    /// Inputs a decoder accepted (or, for operation sequences, hits checked against the model).
    pub(crate) accepted: u64,
    /// Model violations or undetected corruptions.
    pub(crate) wrong: u64,
    pub(crate) first_problem: Option<String>,
    pub(crate) took: Duration,
}

impl TargetStats {
    fn new(name: impl Into<String>) -> TargetStats {
        TargetStats { name: name.into(), ..TargetStats::default() }
    }

    pub(crate) fn problem(&mut self, what: String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what);
        }
    }

    /// Runs `f` under `catch_unwind`, counting the execution and any panic.
    fn exec(&mut self, what: impl FnOnce() -> String, f: impl FnOnce() -> bool) {
        self.execs += 1;
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(true) => self.accepted += 1,
            Ok(false) => {}
            Err(_) => {
                self.crashes += 1;
                let msg = QuietPanics::take().unwrap_or_default();
                self.problem(format!("panic: {msg} on {}", what()));
            }
        }
    }
}

/// How many executions each target gets.
struct Budget {
    records: u64,
    segments: u64,
    nvme_files: u64,
    ops: u64,
}

/// Runs the campaign.
pub(crate) fn run(ctx: &Ctx) -> Result<Section> {
    let budget = if ctx.quick {
        Budget { records: 60_000, segments: 12_000, nvme_files: 12_000, ops: 4_000 }
    } else {
        Budget { records: 7_000_000, segments: 1_200_000, nvme_files: 1_000_000, ops: 200_000 }
    };
    let _quiet = QuietPanics::install();
    let mut rng = StdRng::seed_from_u64(ctx.seed ^ 0xf022);
    let mut targets = Vec::new();

    let pool = record_pool(&mut rng, 256)?;
    targets.push(fuzz_records(&mut rng, &pool, budget.records));
    targets.push(fuzz_segments(&mut rng, &pool, budget.segments));
    let files = real_nvme_files(ctx, &mut rng)?;
    targets.extend(fuzz_nvme_files(&mut rng, &files, budget.nvme_files));
    targets.extend(ops::run_all(ctx, &mut rng, budget.ops)?);

    let mut s = Section::new(
        "Fuzzing",
        "structure-aware mutation of valid records and NVMe files fed to the decoders, and random \
         operation sequences against every tier checked against a map model",
    );
    let mut table = Table::new([
        "target",
        "executions",
        "accepted / hits checked",
        "crashes",
        "wrong (undetected flips, model violations)",
        "execs/s",
    ]);
    let (mut total, mut crashes, mut wrong) = (0, 0, 0);
    for t in &targets {
        total += t.execs;
        crashes += t.crashes;
        wrong += t.wrong;
        let rate = t.execs as f64 / t.took.as_secs_f64().max(1e-9);
        table.row(vec![
            t.name.clone(),
            thousands(t.execs),
            thousands(t.accepted),
            t.crashes.to_string(),
            t.wrong.to_string(),
            thousands(rate as u64),
        ]);
        s.check(
            t.crashes == 0 && t.wrong == 0,
            format!(
                "{}: {} crashes, {} wrong; first: {}",
                t.name,
                t.crashes,
                t.wrong,
                t.first_problem.as_deref().unwrap_or("-")
            ),
        );
        if let (0, 0, Some(p)) = (t.crashes, t.wrong, &t.first_problem) {
            s.note(format!("{}: {p}", t.name));
        }
    }
    table.row(vec![
        "**total**".into(),
        thousands(total),
        String::new(),
        crashes.to_string(),
        wrong.to_string(),
        String::new(),
    ]);
    s.tables.push(table);
    let floor = if ctx.quick { 100_000 } else { 10_000_000 };
    s.check(total >= floor, format!("{total} executions, below the floor of {floor}"));
    s.note(format!(
        "{} executions in total ({} form; floor {}), {crashes} crashes, {wrong} wrong results",
        thousands(total),
        if ctx.quick { "quick" } else { "full" },
        thousands(floor)
    ));
    s.note(
        "decoder inputs: half get their checksums recomputed after mutation so lengths, the rkyv \
         metadata and UTF-8 checks are reached; a record one bit away from a valid one must be \
         refused (counted as wrong otherwise)",
    );
    Ok(s)
}

/// `1234567` as `1,234,567`.
pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn hex_prefix(b: &[u8]) -> String {
    let n = b.len().min(48);
    let mut s: String = b[..n].iter().map(|x| format!("{x:02x}")).collect();
    if b.len() > n {
        s.push_str(&format!("… ({} bytes)", b.len()));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// A random valid namespace (UTF-8, no control characters, `/`, `..`, `:` and non-ASCII allowed).
pub(crate) fn random_namespace(rng: &mut StdRng) -> String {
    const PARTS: [&str; 10] = ["a", "b/c", "..", "ns", ":", "é", "日本", " ", "x\\y", "%2F"];
    let n = rng.random_range(1..4);
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(PARTS[rng.random_range(0..PARTS.len())]);
    }
    s
}

fn random_key(rng: &mut StdRng) -> Result<Key> {
    let ns = random_namespace(rng);
    let len = match rng.random_range(0..10) {
        0 => 0,
        1..=7 => rng.random_range(1..32),
        _ => rng.random_range(32..512),
    };
    let key: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    Key::new(&ns, key).context("a generated key is valid")
}

fn random_value(rng: &mut StdRng) -> Bytes {
    let len = match rng.random_range(0..20) {
        0 => 0,
        1..=15 => rng.random_range(1..256),
        16..=18 => rng.random_range(256..4096),
        _ => rng.random_range(4096..65_536),
    };
    (0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>().into()
}

/// A value LZ4 and zstd shrink: a short random pattern repeated, with a few bytes changed.
fn compressible_value(rng: &mut StdRng) -> Bytes {
    let pattern: Vec<u8> = (0..rng.random_range(1..24)).map(|_| rng.random()).collect();
    let len = rng.random_range(cache_core::COMPRESS_MIN_VALUE..8192);
    let mut v: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
    for _ in 0..rng.random_range(0..8) {
        let i = rng.random_range(0..len);
        v[i] = rng.random();
    }
    v.into()
}

/// Valid encoded records: values of many sizes, with and without expiry and version, raw,
/// compressed (version 3) and chunked (version 2), and tombstones.
fn record_pool(rng: &mut StdRng, n: usize) -> Result<Vec<Bytes>> {
    let mut pool = Vec::with_capacity(n);
    for _ in 0..n {
        let key = random_key(rng)?;
        if rng.random_bool(0.1) {
            pool.push(Record::encode_tombstone(&key, Timestamp::from_millis(rng.random())));
            continue;
        }
        let compress = rng.random_bool(0.2);
        let value = if compress { compressible_value(rng) } else { random_value(rng) };
        let mut entry = Entry::new(value)
            .with_created_at(Timestamp::from_millis(rng.random_range(0..u64::MAX / 2)));
        if rng.random_bool(0.5) {
            entry = entry.with_expiry(Timestamp::from_millis(rng.random()));
        }
        if rng.random_bool(0.5) {
            entry = entry.with_version(rng.random());
        }
        if compress {
            let codec = [Compression::Lz4, Compression::Zstd { level: rng.random_range(1..=9) }];
            let record = Record::encode_with(&key, &entry, codec[rng.random_range(0..2)]);
            anyhow::ensure!(
                RecordHeader::parse(&record)?.version == cache_core::RECORD_VERSION_COMPRESSED,
                "a compressible value was stored raw"
            );
            pool.push(record);
        } else if rng.random_bool(0.15) && !entry.value.is_empty() {
            // Version 2 with small chunks, so its chunk table is fuzzed at the sizes of the
            // other seeds (the writer uses 64 KiB chunks from 256 KiB values up).
            pool.push(chunked(&key, &entry, rng.random_range(12..=13)));
        } else {
            pool.push(Record::encode(&key, &entry));
        }
    }
    for r in &pool {
        Record::decode(r.clone()).context("a freshly encoded record decodes")?;
    }
    Ok(pool)
}

// ---------------------------------------------------------------------------------------------
// Mutation

/// Boundary values for length and offset fields.
const INTERESTING: [u64; 12] = [0, 1, 2, 7, 8, 39, 40, 64, 255, 256, 0x7fff_ffff, 0xffff_ffff];

/// One generic mutation of `data`; `fields` are (offset, width) of known integer fields and
/// `other` an input to splice from.
fn mutate_once(rng: &mut StdRng, data: &mut Vec<u8>, fields: &[(usize, usize)], other: &[u8]) {
    let len = data.len();
    match rng.random_range(0..10) {
        0 | 1 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] ^= 1 << rng.random_range(0..8);
        }
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            data[i] = [0, 0xff, 0x7f, 0x80, 1, rng.random()][rng.random_range(0..6)];
        }
        3 if !fields.is_empty() => {
            let (at, width) = fields[rng.random_range(0..fields.len())];
            if at + width <= len {
                let v = match rng.random_range(0..4) {
                    0 => INTERESTING[rng.random_range(0..INTERESTING.len())],
                    1 => len as u64 + rng.random_range(0..3) - 1,
                    2 => u64::MAX - rng.random_range(0..2),
                    _ => rng.random(),
                };
                let bytes = v.to_le_bytes();
                data[at..at + width].copy_from_slice(&bytes[..width]);
            }
        }
        4 if len > 0 => data.truncate(rng.random_range(0..len)),
        5 => {
            let n = rng.random_range(1..64);
            let zero = rng.random_bool(0.5);
            data.extend((0..n).map(|_| if zero { 0 } else { rng.random::<u8>() }));
        }
        6 if !other.is_empty() => {
            // Splice: keep a head of this input, append a tail of the other.
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 if len > 0 => {
            let at = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - at).min(32));
            data.drain(at..at + n);
        }
        8 => {
            let at = rng.random_range(0..=len);
            let n = rng.random_range(1..16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            data.splice(at..at, bytes);
        }
        _ if len > 1 => {
            // Duplicate a chunk over another place (a common shape of torn writes).
            let a = rng.random_range(0..len);
            let b = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - a.max(b)).min(64));
            let chunk = data[a..a + n].to_vec();
            data[b..b + n].copy_from_slice(&chunk);
        }
        _ => data.push(rng.random()),
    }
}

/// Recomputes a record's checksum in place (header bytes 0..32 and everything after the header).
fn fix_record_checksum(rec: &mut [u8]) {
    if rec.len() < HEADER_LEN {
        return;
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&rec[..HEADER_LEN - 8]);
    // A version-2 header whose lengths fit: the checksum skips the value.
    let v2 = RecordHeader::parse(rec).ok().filter(|h| {
        h.version == cache_core::RECORD_VERSION_CHUNKED && h.total_len() == Some(rec.len() as u64)
    });
    match v2 {
        Some(header) => {
            let (at, len) = (header.value_offset() as usize, header.value_len as usize);
            h.update(&rec[HEADER_LEN..at]);
            h.update(&rec[at + len..]);
        }
        None => h.update(&rec[HEADER_LEN..]),
    }
    let sum = h.digest().to_le_bytes();
    rec[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&sum);
}

/// `entry` under `key` as a version-2 record with chunks of `2^shift` bytes (docs/format.md).
fn chunked(key: &Key, entry: &Entry, shift: u32) -> Bytes {
    let v1 = Record::encode(key, entry);
    let at = v1.len() - entry.value.len();
    let mut out = v1[..at].to_vec();
    out[4..6].copy_from_slice(&cache_core::RECORD_VERSION_CHUNKED.to_le_bytes());
    out[20..24].copy_from_slice(&shift.to_le_bytes());
    let table: Vec<u8> =
        entry.value.chunks(1 << shift).flat_map(|c| xxh3_64(c).to_le_bytes()).collect();
    out.extend_from_slice(&entry.value);
    out.extend_from_slice(&table);
    fix_record_checksum(&mut out);
    out.into()
}

/// Integer fields of the record header.
const RECORD_FIELDS: [(usize, usize); 9] =
    [(4, 2), (6, 2), (8, 4), (12, 4), (16, 4), (20, 4), (24, 8), (32, 8), (40, 8)];

// ---------------------------------------------------------------------------------------------
// Decoder targets

/// Decodes `input` every way the tiers do and touches every accessor of an accepted record.
fn decode_record(input: &[u8], range: &std::ops::Range<u64>) -> bool {
    let bytes = Bytes::copy_from_slice(input);
    let _ = RecordHeader::parse(input);
    let structure = Record::decode_with(bytes.clone(), Verify::StructureOnly);
    let piece = verify_piece(input, range);
    if let Ok(r) = &structure {
        touch(r);
    }
    let ranged = Record::decode_for_range(bytes.clone(), range);
    if let Ok(r) = &ranged {
        touch(r);
        assert!(structure.is_ok(), "a range-verified record failed the structure check");
    }
    match Record::decode(bytes) {
        Ok(r) => {
            touch(&r);
            assert!(structure.is_ok(), "checksum-verified record failed the structure check");
            assert!(piece != Some(false), "a verified record's chunks fail `verify_piece`");
            let part = ranged.expect("a fully verified record passes a range check");
            assert!(
                cache_core::slice_range(&part.value(), range)
                    == cache_core::slice_range(&r.value(), range),
                "a range read differs from the full read"
            );
            true
        }
        Err(e) => {
            assert_eq!(e.kind(), cache_core::ErrorKind::Corrupted, "decode error kind: {e}");
            false
        }
    }
}

/// For a version-2 record of the input's length, whether `RecordHead::verify_piece` accepts the
/// whole chunks around `range` (as the object tier's ranged reads fetch them); `None` otherwise.
fn verify_piece(input: &[u8], range: &std::ops::Range<u64>) -> Option<bool> {
    let head = RecordHead::parse(input).ok()?;
    let h = *head.header();
    if h.version != cache_core::RECORD_VERSION_CHUNKED || h.total_len() != Some(input.len() as u64)
    {
        return None;
    }
    let (first, span) = h.chunks_around(range);
    let at = h.value_offset();
    let table = &input[(at + h.value_len) as usize..];
    let piece = &input[(at + span.start) as usize..(at + span.end) as usize];
    let _ = head.meta();
    Some(head.verify_piece(table, first, piece).is_ok())
}

fn touch(r: &Record) {
    let total = r.header().total_len().expect("validated");
    assert_eq!(total, r.as_bytes().len() as u64, "record length");
    assert_eq!(r.value().len() as u64, r.header().decoded_len, "value length");
    assert_eq!(r.codec(), r.header().codec, "codec");
    assert_eq!(r.parts().len() as u64, total, "parts");
    let _ = (r.meta(), r.namespace().len(), r.key_bytes().len(), r.is_tombstone());
    if let Ok(key) = r.key() {
        assert!(r.matches(&key), "a record does not match its own key");
    }
    let _ = r.to_entry();
}

fn fuzz_records(rng: &mut StdRng, pool: &[Bytes], execs: u64) -> TargetStats {
    let mut t = TargetStats::new(
        "record decoder (`Record::decode`, range, structure-only, header, head, pieces; versions 1 to 3)",
    );
    let started = Instant::now();
    let mut input = Vec::new();
    for i in 0..execs {
        let seed = &pool[rng.random_range(0..pool.len())];
        input.clear();
        input.extend_from_slice(seed);
        let single_flip = rng.random_bool(0.15);
        if single_flip {
            let bit = rng.random_range(0..input.len() * 8);
            input[bit / 8] ^= 1 << (bit % 8);
        } else {
            let other = &pool[rng.random_range(0..pool.len())];
            for _ in 0..rng.random_range(1..=4) {
                mutate_once(rng, &mut input, &RECORD_FIELDS, other);
            }
            if rng.random_bool(0.5) {
                fix_record_checksum(&mut input);
            }
        }
        let data = &input;
        let from = rng.random_range(0..data.len() as u64 + 16);
        let range = from..from + rng.random_range(0..20_000);
        let mut accepted = false;
        t.exec(
            || format!("input #{i} {} range {range:?}", hex_prefix(data)),
            || {
                accepted = decode_record(data, &range);
                accepted
            },
        );
        if single_flip && accepted {
            t.wrong += 1;
            t.problem(format!(
                "a one-bit flip of a valid record was accepted: {}",
                hex_prefix(data)
            ));
        }
    }
    t.took = started.elapsed();
    t
}

/// A segment image and the offsets of its records.
struct SegmentSeed {
    image: Vec<u8>,
    fields: Vec<(usize, usize)>,
    records: Vec<(usize, usize)>,
}

fn segment_seed(rng: &mut StdRng, pool: &[Bytes]) -> SegmentSeed {
    let size = rng.random_range(1..=4u64) * 4096;
    let mut records = Vec::new();
    let mut chosen = Vec::new();
    let mut at = 64;
    for _ in 0..rng.random_range(0..12) {
        let r = &pool[rng.random_range(0..pool.len())];
        if at + r.len() > size as usize {
            continue;
        }
        records.push((at, r.len()));
        chosen.push(r.clone());
        at += r.len();
    }
    let image = fuzzing::segment_image(rng.random_range(0..1000), size, &chosen);
    let mut fields = vec![(8, 2), (10, 2), (12, 4), (16, 8), (24, 8), (56, 8)];
    for (start, _) in &records {
        fields.extend(RECORD_FIELDS.iter().map(|(o, w)| (start + o, *w)));
    }
    SegmentSeed { image, fields, records }
}

/// Recomputes the segment header checksum and the checksum of each original record slot.
fn fix_segment(data: &mut [u8], records: &[(usize, usize)]) {
    if data.len() >= 64 {
        let sum = xxh3_64(&data[..56]).to_le_bytes();
        data[56..64].copy_from_slice(&sum);
    }
    for (start, len) in records {
        if start + len <= data.len() {
            fix_record_checksum(&mut data[*start..start + len]);
        }
    }
}

fn fuzz_segments(rng: &mut StdRng, pool: &[Bytes], execs: u64) -> TargetStats {
    let mut t = TargetStats::new("NVMe segment image (`fuzzing::decode_segment`, header)");
    let started = Instant::now();
    let seeds: Vec<SegmentSeed> = (0..64).map(|_| segment_seed(rng, pool)).collect();
    for s in &seeds {
        if fuzzing::decode_segment(&s.image) != Some(s.records.len()) {
            t.wrong += 1;
            t.problem(format!(
                "a valid segment image of {} records was not read back",
                s.records.len()
            ));
        }
    }
    let mut input = Vec::new();
    for i in 0..execs {
        let seed = &seeds[rng.random_range(0..seeds.len())];
        let other = &pool[rng.random_range(0..pool.len())];
        input.clear();
        input.extend_from_slice(&seed.image);
        for _ in 0..rng.random_range(1..=4) {
            mutate_once(rng, &mut input, &seed.fields, other);
        }
        if rng.random_bool(0.5) {
            fix_segment(&mut input, &seed.records);
        }
        let data = &input;
        t.exec(
            || format!("segment input #{i} {}", hex_prefix(data)),
            || {
                let _ = fuzzing::decode_segment_header(data);
                fuzzing::decode_segment(data).is_some()
            },
        );
    }
    t.took = started.elapsed();
    t
}

/// The files of a real NVMe tier after a clean close: segments, index snapshot, namespace log.
struct NvmeFiles {
    segments: Vec<Vec<u8>>,
    snapshot: Vec<u8>,
    nslog: Vec<u8>,
}

fn real_nvme_files(ctx: &Ctx, rng: &mut StdRng) -> Result<NvmeFiles> {
    let dir = ctx.work_dir.join("fuzz-nvme-files");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        use cache_core::Tier;
        let tier = cache_l2_nvme::NvmeTierBuilder::new(&dir, 512 * 1024).open().await?;
        for i in 0..40u32 {
            let ns = ["fuzz-a", "fuzz-b", "fuzz/c"][i as usize % 3];
            let key = Key::new(ns, format!("k{i}"))?;
            let len = rng.random_range(0..3000);
            let _ = tier.put(key.clone(), Entry::new(vec![i as u8; len])).await?;
            if i % 7 == 0 {
                tier.remove(&key).await?;
            }
        }
        tier.clear_namespace(&cache_core::Namespace::new("fuzz-b")?).await?;
        tier.close().await?;
        anyhow::Ok(())
    })?;
    let mut segments = Vec::new();
    for e in std::fs::read_dir(&dir)? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "seg") {
            let mut bytes = std::fs::read(&path)?;
            // Keep the written part and a little of the preallocated tail: scans stop at zeros.
            let used = bytes.iter().rposition(|b| *b != 0).map_or(64, |p| p + 1);
            bytes.truncate((used + 256).min(bytes.len()));
            segments.push(bytes);
        }
    }
    let snapshot = std::fs::read(dir.join("index.snap")).context("reading index.snap")?;
    let nslog = std::fs::read(dir.join("namespaces.log")).context("reading namespaces.log")?;
    anyhow::ensure!(!segments.is_empty(), "the tier wrote no segment file");
    Ok(NvmeFiles { segments, snapshot, nslog })
}

fn fix_snapshot(data: &mut [u8]) {
    if data.len() >= 72 {
        let sum = xxh3_64(&data[..56]).to_le_bytes();
        data[56..64].copy_from_slice(&sum);
        let end = data.len() - 8;
        let sum = xxh3_64(&data[64..end]).to_le_bytes();
        data[end..].copy_from_slice(&sum);
    }
}

fn fix_nslog(data: &mut [u8]) {
    let mut at = 16;
    while at + 40 <= data.len() {
        let sum = xxh3_64(&data[at..at + 32]).to_le_bytes();
        data[at + 32..at + 40].copy_from_slice(&sum);
        at += 40;
    }
}

fn fuzz_nvme_files(rng: &mut StdRng, files: &NvmeFiles, execs: u64) -> Vec<TargetStats> {
    let mut out = Vec::new();
    // Sanity: the unmutated files decode.
    let mut sanity = Vec::new();
    if fuzzing::decode_snapshot(&files.snapshot).is_none() {
        sanity.push("the real index snapshot does not decode".to_owned());
    }
    if fuzzing::decode_namespace_log(&files.nslog).is_none_or(|n| n == 0) {
        sanity.push("the real namespace log holds no marker".to_owned());
    }
    if files.segments.iter().all(|s| fuzzing::decode_segment(s).is_none_or(|n| n == 0)) {
        sanity.push("no real segment decodes to records".to_owned());
    }
    let snap_fields: Vec<(usize, usize)> =
        vec![(8, 2), (10, 2), (12, 4), (16, 8), (24, 8), (32, 8), (64, 8), (72, 8), (80, 4)];
    let nslog_fields: Vec<(usize, usize)> = vec![(8, 2), (10, 2), (12, 4), (32, 8), (40, 8)];
    let seg_fields: Vec<(usize, usize)> = [(8, 2), (10, 2), (16, 8), (24, 8), (56, 8)]
        .into_iter()
        .chain(RECORD_FIELDS.iter().map(|(o, w)| (o + 64, *w)))
        .collect();
    let share = execs / 3;
    for kind in 0..3 {
        let name =
            ["real NVMe segment files", "real NVMe index snapshot", "real NVMe namespace log"]
                [kind];
        let mut t = TargetStats::new(name);
        if kind == 0 {
            for p in &sanity {
                t.wrong += 1;
                t.problem(p.clone());
            }
        }
        let started = Instant::now();
        let mut input = Vec::new();
        for i in 0..share {
            let (seed, fields): (&[u8], &[(usize, usize)]) = match kind {
                0 => (&files.segments[rng.random_range(0..files.segments.len())], &seg_fields),
                1 => (&files.snapshot, &snap_fields),
                _ => (&files.nslog, &nslog_fields),
            };
            input.clear();
            input.extend_from_slice(seed);
            let other: &[u8] = if rng.random_bool(0.5) { &files.snapshot } else { &files.nslog };
            for _ in 0..rng.random_range(1..=4) {
                mutate_once(rng, &mut input, fields, other);
            }
            if rng.random_bool(0.5) {
                match kind {
                    0 => fix_segment(&mut input, &[]),
                    1 => fix_snapshot(&mut input),
                    _ => fix_nslog(&mut input),
                }
            }
            let data = &input;
            t.exec(
                || format!("{name} input #{i} {}", hex_prefix(data)),
                || match kind {
                    0 => fuzzing::decode_segment(data).is_some(),
                    1 => fuzzing::decode_snapshot(data).is_some(),
                    _ => fuzzing::decode_namespace_log(data).is_some(),
                },
            );
        }
        t.took = started.elapsed();
        out.push(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separates() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }

    #[test]
    fn a_one_bit_flip_is_refused_and_a_fixed_checksum_is_accepted() {
        let key = Key::new("ns", "k").unwrap();
        let record = Record::encode(&key, &Entry::new("a value of some length"));
        let mut r = record.to_vec();
        r[HEADER_LEN + 2] ^= 4;
        assert!(!decode_record(&r, &(0..4)), "flip went unnoticed");
        let mut r = record.to_vec();
        let last = r.len() - 1;
        r[last] ^= 1;
        assert!(!decode_record(&r, &(0..4)), "flip went unnoticed");
        fix_record_checksum(&mut r);
        assert!(decode_record(&r, &(0..4)), "a changed value under a fixed checksum is valid");
    }

    #[test]
    fn a_hand_built_chunked_record_decodes_and_its_checksum_can_be_fixed() {
        let key = Key::new("ns", "k").unwrap();
        let entry = Entry::new(vec![7u8; 10_000]);
        let record = chunked(&key, &entry, 12);
        assert_eq!(RecordHeader::parse(&record).unwrap().chunks(), 3);
        assert_eq!(Record::decode(record.clone()).unwrap().to_entry(), entry);
        let mut r = record.to_vec();
        r[HEADER_LEN + 25 + 2] ^= 1; // the key (after 25 bytes of metadata and "ns")
        assert!(!decode_record(&r, &(0..1)));
        fix_record_checksum(&mut r);
        assert!(Record::decode(r.clone().into()).is_ok(), "the fixed checksum skips the value");
        let mut r = record.to_vec();
        let in_chunk_2 = r.len() - 24 - 10;
        r[in_chunk_2] ^= 1;
        assert!(Record::decode_for_range(r.clone().into(), &(0..4096)).is_ok());
        assert!(!decode_record(&r, &(0..4096)), "the full decode sees chunk 2");
    }

    #[test]
    fn the_fuzzers_run_and_count() {
        let _quiet = QuietPanics::install();
        let mut rng = StdRng::seed_from_u64(2);
        let pool = record_pool(&mut rng, 16).unwrap();
        let t = fuzz_records(&mut rng, &pool, 2_000);
        assert_eq!((t.execs, t.crashes, t.wrong), (2_000, 0, 0), "{:?}", t.first_problem);
        assert!(t.accepted > 0, "some mutated records (fixed checksums) decode");
        let t = fuzz_segments(&mut rng, &pool, 500);
        assert_eq!((t.execs, t.crashes, t.wrong), (500, 0, 0), "{:?}", t.first_problem);
    }

    #[test]
    fn a_panic_is_counted_as_a_crash() {
        let _quiet = QuietPanics::install();
        let mut t = TargetStats::new("t");
        t.exec(|| "input".into(), || panic!("boom"));
        assert_eq!(t.crashes, 1);
        assert!(t.first_problem.as_deref().is_some_and(|p| p.contains("boom")), "{t:?}");
    }
}
