//! `cache-node`: one node of a multi-node deployment, for the multi-process tests
//! (`tests/tests/it/multi_node.rs`). It runs a [`CoherentCache`] over its own RAM and disk tiers
//! and the shared Redis and S3 tiers, and answers one command per line on stdin with one line
//! on stdout.
//!
//! Configuration (environment):
//!
//! | variable | meaning |
//! | --- | --- |
//! | `TC_NODE_REDIS` | the Redis server's URL (required) |
//! | `TC_NODE_PREFIX` | the Redis prefix and S3 key prefix the nodes share (required) |
//! | `TC_NODE_NAMESPACE` | the namespace the commands use (required) |
//! | `AWS_ENDPOINT`, `S3_BUCKET`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP` | the S3 server, as for the integration tests |
//!
//! Commands (keys and values are single words):
//!
//! | command | answer |
//! | --- | --- |
//! | `put K V` | `ok VERSION` |
//! | `get K` | `hit V VERSION` or `miss` (through the coherent cache) |
//! | `local K` | `hit V VERSION` or `miss` (the RAM and disk tiers only, unchecked) |
//! | `fence K` | `fence VERSION`: the lowest version of K this node may serve |
//! | `remove K` / `clear` | `ok` |
//! | `quiesce` | `ok` once promotions and demotions are written |
//! | `hammer K TAG N` | `N` puts of `TAG-0` … `TAG-{N-1}` to K, each followed by three gets that must not return an older version than the put's; `done VERSION VALUE` of the last put, or `error …` |
//! | `stats` | `stats applied=… resyncs=… subscriptions=… refused=… unpublished=… republished=…` |
//! | `quit` | exits |
//!
//! It prints `ready NODE_ID` once it is subscribed, and `error MESSAGE` for a failed command.

use std::{env, sync::Arc, time::Duration};

use cache_coherent::CoherentCache;
use cache_core::{Entry, Key, Namespace};
use cache_l1::MemoryTier;
use cache_l2_nvme::NvmeTierBuilder;
use cache_l3_object::{ObjectTierBuilder, S3Config};
use cache_remote_redis::{Invalidator, RedisTier};
use cache_tiered::{TierOptions, TieredCache};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Result<String, Failure> {
    env::var(name).map_err(|_| format!("{name} is not set").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Failure> {
    let redis = var("TC_NODE_REDIS")?;
    let prefix = var("TC_NODE_PREFIX")?;
    let ns = Namespace::new(&var("TC_NODE_NAMESPACE")?)?;
    let dir = tempfile::tempdir()?;

    let timeout = Duration::from_millis(500);
    let nvme = NvmeTierBuilder::new(dir.path(), 8 << 20).segment_size(1 << 20).open().await?;
    let shared_redis =
        RedisTier::builder(&redis).prefix(&prefix).operation_timeout(timeout).build().await?;
    let s3 = S3Config::new(var("S3_BUCKET")?)
        .with_endpoint(var("AWS_ENDPOINT")?)
        .with_region(env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()))
        .with_credentials(var("AWS_ACCESS_KEY_ID")?, var("AWS_SECRET_ACCESS_KEY")?.as_str())
        .with_allow_http(env::var("AWS_ALLOW_HTTP").map_or(true, |v| v != "false"))
        .with_path_style(true);
    let object = ObjectTierBuilder::s3(s3)
        .prefix(&prefix)
        .operation_timeout(Duration::from_secs(10))
        .build()
        .await?;
    let cache = TieredCache::builder()
        .tier(MemoryTier::builder(16 << 20).build())
        .tier(nvme)
        .tier(TierOptions::new(shared_redis).timeout(timeout))
        .tier(object)
        .build()?;
    let invalidator = Invalidator::builder(&redis)
        .prefix(&prefix)
        .watch(ns.clone())
        .operation_timeout(timeout)
        .heartbeat(Duration::from_millis(100))
        .reconnect_delay(Duration::from_millis(50));
    let node = CoherentCache::builder(cache, invalidator).local_tiers(2).build().await?;
    let local = node.cache().tiers()[..2].to_vec();

    let mut out = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    say(&mut out, &format!("ready {}", node.invalidator().node_id())).await?;
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"quit") {
            break;
        }
        let answer = match run(&node, &local, &ns, &words).await {
            Ok(answer) => answer,
            Err(e) => format!("error {e}"),
        };
        say(&mut out, &answer).await?;
    }
    node.invalidator().close();
    Ok(())
}

async fn say(out: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes()).await?;
    out.write_all(b"\n").await?;
    out.flush().await
}

fn shown(entry: Option<Entry>) -> String {
    match entry {
        Some(e) => {
            format!("hit {} {}", String::from_utf8_lossy(&e.value), e.meta.version.unwrap_or(0))
        }
        None => "miss".to_owned(),
    }
}

async fn run(
    node: &CoherentCache,
    local: &[Arc<dyn cache_core::Tier>],
    ns: &Namespace,
    words: &[&str],
) -> Result<String, Failure> {
    let key = |i: usize| -> Result<Key, Failure> {
        Ok(ns.key(words.get(i).ok_or("missing key")?.as_bytes().to_vec())?)
    };
    Ok(match words {
        ["put", _, value] => {
            let put = node.put_report(key(1)?, Entry::new(value.as_bytes().to_vec())).await?;
            format!("ok {}", put.version)
        }
        ["get", _] => shown(node.get(&key(1)?).await?),
        ["local", _] => {
            let k = key(1)?;
            let mut found = None;
            for tier in local {
                if let Some(e) = tier.get(&k).await? {
                    found = Some(e);
                    break;
                }
            }
            shown(found)
        }
        ["fence", _] => format!("fence {}", node.versions().min_version(&key(1)?)),
        ["remove", _] => {
            node.remove(&key(1)?).await?;
            "ok".to_owned()
        }
        ["clear"] => {
            node.clear_namespace(ns).await?;
            "ok".to_owned()
        }
        ["quiesce"] => {
            node.cache().quiesce().await;
            "ok".to_owned()
        }
        ["hammer", _, tag, n] => {
            let k = key(1)?;
            let n: usize = n.parse()?;
            let mut last = (0, String::new());
            for i in 0..n {
                let value = format!("{tag}-{i}");
                let put =
                    node.put_report(k.clone(), Entry::new(value.clone().into_bytes())).await?;
                let version = put.version;
                // Reads between the writes fill this node's local tiers from the shared ones
                // while other nodes' messages arrive: the race the fences are for.
                for _ in 0..3 {
                    if let Some(seen) = node.get(&k).await? {
                        let v = seen.meta.version.unwrap_or(0);
                        if v < version {
                            return Err(
                                format!("served version {v} after putting {version}").into()
                            );
                        }
                    }
                }
                last = (version, value);
            }
            format!("done {} {}", last.0, last.1)
        }
        ["stats"] => {
            let i = node.invalidator().stats();
            let c = node.coherent_stats();
            format!(
                "stats applied={} resyncs={} subscriptions={} refused={} unpublished={} republished={}",
                i.applied,
                i.resyncs,
                node.invalidator().subscriptions(),
                c.refused,
                c.unpublished,
                c.republished
            )
        }
        _ => return Err(format!("unknown command {words:?}").into()),
    })
}
