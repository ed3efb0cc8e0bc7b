//! `cache-bench compression`: what per-record compression and encryption at rest save and cost
//! on realistic values.
//!
//! Four generated data sets (deterministic seeds, nothing stored): LLM chat-completion responses
//! as JSON, 768-dimension f32 embeddings, 64 KiB fp16 tensor chunks (a KV-cache block) and
//! random bytes. For each codec the tool measures, on the record format itself:
//! - the stored bytes against raw records (what the budget counts) and the share of values
//!   the codec stored compressed (the rest did not save an eighth and stay raw);
//! - encode and decode throughput on one core (`RecordFormat::encode`, `RecordFormat::decode`
//!   with its checksum), medians of interleaved rounds;
//! - the same with the values sealed at rest (XChaCha20-Poly1305, raw or after LZ4), so the
//!   cost of encryption reads against the same rows;
//! - hits per second of one task reading every value back from an NVMe tier written with that
//!   codec (segments in the page cache), medians of interleaved rounds.

use std::{fmt::Write as _, hint::black_box, path::Path, time::Instant};

use anyhow::Result;
use bytes::Bytes;
use std::sync::Arc;

use cache_core::{
    Compression, DerivedKeys, Durability, EncryptionKey, Entry, Key, KeyId, KeyProvider, Record,
    RecordFormat, RecordHeader, Tier,
};
use cache_l2_nvme::NvmeTierBuilder;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::output::table;

/// `cache-bench compression`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CompressionArgs {
    /// Values per data set.
    #[arg(long, default_value_t = 2_000)]
    values: usize,
    /// Interleaved rounds of each timing (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Where the NVMe tiers put their files (default `target/bench/data`).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

/// The settings compared, in table order: (codec, sealed at rest).
const CODECS: [(Compression, bool); 7] = [
    (Compression::None, false),
    (Compression::Lz4, false),
    (Compression::Zstd { level: 1 }, false),
    (Compression::Zstd { level: 3 }, false),
    (Compression::Zstd { level: 9 }, false),
    (Compression::None, true),
    (Compression::Lz4, true),
];

/// The key provider of the sealed rows: every namespace sealed under a key derived from a
/// fixed master key.
fn bench_keys() -> Arc<dyn KeyProvider> {
    Arc::new(DerivedKeys::new(KeyId(1), EncryptionKey::from_bytes([0x42; 32])))
}

fn format_of((compression, sealed): (Compression, bool)) -> RecordFormat {
    let format = RecordFormat::new().with_compression(compression);
    if sealed { format.with_keys(bench_keys()) } else { format }
}

fn label((compression, sealed): (Compression, bool)) -> String {
    match (compression, sealed) {
        (c, false) => c.to_string(),
        (Compression::None, true) => "sealed".to_owned(),
        (c, true) => format!("{c} + sealed"),
    }
}

/// One generated data set.
struct DataSet {
    name: &'static str,
    values: Vec<Bytes>,
}

/// The measurements of one (data set, codec).
struct Row {
    stored_bytes: u64,
    raw_bytes: u64,
    compressed: usize,
    encode_mb_s: f64,
    decode_mb_s: f64,
    decode_us: f64,
    hits_per_s: f64,
}

pub(crate) async fn run(args: CompressionArgs) -> Result<()> {
    let dir = args.data_dir.clone().unwrap_or_else(|| crate::output::out_dir().join("data"));
    println!("{}", section(args.values, args.rounds, &dir).await?);
    Ok(())
}

/// The Markdown section (also used by the report).
pub(crate) async fn section(values: usize, rounds: usize, data_dir: &Path) -> Result<String> {
    let sets = data_sets(values);
    let mut md = String::new();
    let _ = writeln!(md, "## Compression\n");
    let _ = writeln!(
        md,
        "Per-record compression (`Compression` on every persistent tier's builder) on {values} \
         generated values per data set: LLM chat-completion responses as JSON (about 0.5 to 6 \
         KiB), 768-dimension f32 embeddings (3 KiB), 64 KiB fp16 tensor chunks (a KV-cache \
         block) and random bytes (4 KiB). \"Stored\" is the bytes of the records a tier keeps \
         (what its budget counts) against raw records; a value is stored compressed only when \
         the codec saves an eighth of it. \"sealed\" rows are encryption at rest \
         (`encryption` on the builders: XChaCha20-Poly1305 per record, after the codec). Encode \
         and decode are `RecordFormat::encode` and `RecordFormat::decode` (checksum included) \
         on one core; \"NVMe hits/s\" is one task reading every value back from an NVMe tier \
         written with that setting, its segments in the page cache. Times are medians of \
         {rounds} interleaved rounds on the shared 2-core VM.\n"
    );
    let mut rows = Vec::new();
    for set in &sets {
        let measured = measure(set, rounds, data_dir).await?;
        for (codec, row) in CODECS.iter().zip(measured) {
            rows.push(vec![
                set.name.to_owned(),
                label(*codec),
                format!("{:.3}", row.stored_bytes as f64 / row.raw_bytes.max(1) as f64),
                format!("{:.0} %", row.compressed as f64 * 100.0 / set.values.len() as f64),
                format!("{:.0}", row.encode_mb_s),
                format!("{:.0}", row.decode_mb_s),
                format!("{:.2}", row.decode_us),
                format!("{:.0}", row.hits_per_s),
            ]);
        }
    }
    md.push_str(&table(
        &[
            "data",
            "codec",
            "stored ÷ raw",
            "compressed",
            "encode MB/s",
            "decode MB/s",
            "decode µs/value",
            "NVMe hits/s",
        ],
        &rows,
    ));
    md.push('\n');
    Ok(md)
}

async fn measure(set: &DataSet, rounds: usize, data_dir: &Path) -> Result<Vec<Row>> {
    let keys: Vec<Key> = (0..set.values.len())
        .map(|i| Key::new("bench/compression", format!("{}-{i}", set.name)))
        .collect::<Result<_, _>>()?;
    let entries: Vec<Entry> = set.values.iter().map(|v| Entry::new(v.clone())).collect();
    let value_bytes: u64 = set.values.iter().map(|v| v.len() as u64).sum();
    let raw_bytes: u64 =
        keys.iter().zip(&entries).map(|(k, e)| Record::encode(k, e).len() as u64).sum();
    let formats: Vec<RecordFormat> = CODECS.iter().map(|&c| format_of(c)).collect();
    let stored: Vec<Vec<Bytes>> = formats
        .iter()
        .map(|f| keys.iter().zip(&entries).map(|(k, e)| f.encode(k, e)).collect())
        .collect::<Result<_, _>>()?;
    // NVMe tiers, one per codec, written once.
    let mut tiers = Vec::new();
    for (i, &(c, sealed)) in CODECS.iter().enumerate() {
        let dir = data_dir.join(format!("compression-{}-{i}", set.name.replace(' ', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        let builder = NvmeTierBuilder::new(&dir, (raw_bytes * 3).max(64 << 20))
            .durability(Durability::None)
            .compression(c);
        let builder = if sealed { builder.encryption(bench_keys()) } else { builder };
        let tier = builder.open().await?;
        for (k, e) in keys.iter().zip(&entries) {
            anyhow::ensure!(tier.put(k.clone(), e.clone()).await?.is_stored(), "a put refused");
        }
        tier.flush().await?;
        tiers.push((tier, dir));
    }
    let mut timings = vec![(Vec::new(), Vec::new(), Vec::new()); CODECS.len()];
    for _ in 0..rounds.max(1) {
        for (i, format) in formats.iter().enumerate() {
            let t = Instant::now();
            for (k, e) in keys.iter().zip(&entries) {
                black_box(format.encode(k, e)?);
            }
            timings[i].0.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for r in &stored[i] {
                black_box(format.decode(r.clone())?);
            }
            timings[i].1.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for k in &keys {
                anyhow::ensure!(tiers[i].0.get(k).await?.is_some(), "an NVMe miss in the bench");
            }
            timings[i].2.push(t.elapsed().as_secs_f64());
        }
    }
    let mut rows = Vec::new();
    for (i, (enc, dec, hits)) in timings.into_iter().enumerate() {
        let mb = value_bytes as f64 / 1e6;
        let (enc, dec, hits) = (median(enc), median(dec), median(hits));
        rows.push(Row {
            stored_bytes: stored[i].iter().map(|r| r.len() as u64).sum(),
            raw_bytes,
            compressed: stored[i]
                .iter()
                .filter(|r| RecordHeader::parse(r).is_ok_and(|h| h.codec.is_some()))
                .count(),
            encode_mb_s: mb / enc,
            decode_mb_s: mb / dec,
            decode_us: dec * 1e6 / keys.len() as f64,
            hits_per_s: keys.len() as f64 / hits,
        });
    }
    for (tier, dir) in tiers {
        tier.close().await?;
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn data_sets(n: usize) -> Vec<DataSet> {
    let mut rng = StdRng::seed_from_u64(0x00c0_ffee);
    vec![
        DataSet { name: "LLM JSON", values: (0..n).map(|i| llm_json(&mut rng, i)).collect() },
        DataSet { name: "f32 embeddings", values: (0..n).map(|_| embedding(&mut rng)).collect() },
        DataSet { name: "fp16 KV chunk", values: (0..n / 8).map(|_| kv_chunk(&mut rng)).collect() },
        DataSet {
            name: "random",
            values: (0..n).map(|_| (0..4096).map(|_| rng.random::<u8>()).collect()).collect(),
        },
    ]
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "be",
    "on",
    "not",
    "this",
    "by",
    "are",
    "or",
    "can",
    "which",
    "from",
    "an",
    "you",
    "cache",
    "value",
    "request",
    "model",
    "data",
    "return",
    "function",
    "when",
    "each",
    "time",
    "memory",
    "disk",
    "first",
    "query",
    "result",
    "error",
    "because",
    "example",
    "should",
    "using",
    "will",
    "more",
    "than",
    "only",
    "into",
    "other",
    "then",
    "these",
    "so",
    "some",
    "would",
    "make",
    "like",
    "Rust",
    "async",
    "thread",
    "latency",
    "throughput",
    "key",
    "object",
    "store",
    "file",
    "read",
    "write",
    "server",
    "client",
    "token",
    "prompt",
    "response",
    "answer",
    "question",
    "step",
    "however",
    "therefore",
    "consider",
    "approach",
    "performance",
    "system",
    "network",
    "user",
];

/// A chat-completion response: OpenAI-style JSON around 60 to 900 words of English-like text
/// (words drawn with a skew towards the common ones, as in real text).
fn llm_json(rng: &mut StdRng, i: usize) -> Bytes {
    let words = rng.random_range(60..900);
    let mut text = String::new();
    for w in 0..words {
        let u: f64 = rng.random();
        let word = WORDS[((u * u * u) * WORDS.len() as f64) as usize];
        if w > 0 {
            text.push(if rng.random_bool(0.06) { '\n' } else { ' ' });
        }
        text.push_str(word);
        if rng.random_bool(0.08) {
            text.push(if rng.random_bool(0.7) { '.' } else { ',' });
        }
    }
    let models = ["gpt-4o-mini", "claude-sonnet", "llama-3.1-70b-instruct"];
    let json = format!(
        "{{\"id\":\"chatcmpl-{:016x}{:08x}\",\"object\":\"chat.completion\",\"created\":{},\
         \"model\":\"{}\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\
         \"content\":{:?}}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":{},\
         \"completion_tokens\":{},\"total_tokens\":{}}}}}",
        rng.random::<u64>(),
        i,
        1_750_000_000 + i,
        models[i % models.len()],
        text,
        rng.random_range(20..2000),
        words * 4 / 3,
        words * 2,
    );
    json.into_bytes().into()
}

/// A unit-scale 768-dimension f32 vector, little-endian.
fn embedding(rng: &mut StdRng) -> Bytes {
    (0..768)
        .flat_map(|_| {
            let x: f32 = (0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0;
            (x * 0.05).to_le_bytes()
        })
        .collect::<Vec<u8>>()
        .into()
}

/// 64 KiB of fp16 activations (roughly normal, scale 1).
fn kv_chunk(rng: &mut StdRng) -> Bytes {
    (0..32 * 1024)
        .flat_map(|_| {
            let x: f32 = (0..4).map(|_| rng.random::<f32>()).sum::<f32>() - 2.0;
            f16_bits(x * 1.7).to_le_bytes()
        })
        .collect::<Vec<u8>>()
        .into()
}

/// The IEEE 754 half-precision bits of `x` (truncating; subnormals flush to zero).
fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    if exp <= 0 {
        return sign;
    }
    if exp >= 31 {
        return sign | 0x7c00;
    }
    sign | ((exp as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
}
