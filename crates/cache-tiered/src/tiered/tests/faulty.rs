//! A tier wrapper that can be told to fail or hang, for outage tests.

use std::{
    sync::atomic::{AtomicU8, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use cache_core::{
    Entry, Error, ErrorKind, Key, Namespace, PutOutcome, Result, StatsSnapshot, Tier, Usage,
};

/// What the wrapper does on each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Mode {
    Ok = 0,
    Fail = 1,
    Hang = 2,
}

#[derive(Debug)]
pub(super) struct FaultyTier<T> {
    inner: T,
    mode: AtomicU8,
}

impl<T: Tier> FaultyTier<T> {
    pub(super) fn new(inner: T) -> FaultyTier<T> {
        FaultyTier { inner, mode: AtomicU8::new(Mode::Ok as u8) }
    }

    pub(super) fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    async fn gate(&self) -> Result<()> {
        match self.mode.load(Ordering::SeqCst) {
            0 => Ok(()),
            1 => Err(Error::new(ErrorKind::Unavailable, "faulty", "injected failure")),
            _ => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl<T: Tier> Tier for FaultyTier<T> {
    fn name(&self) -> &'static str {
        "faulty"
    }
    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        self.gate().await?;
        self.inner.get(key).await
    }
    async fn put(&self, key: Key, entry: Entry) -> Result<PutOutcome> {
        self.gate().await?;
        self.inner.put(key, entry).await
    }
    async fn remove(&self, key: &Key) -> Result<()> {
        self.gate().await?;
        self.inner.remove(key).await
    }
    async fn clear_namespace(&self, ns: &Namespace) -> Result<()> {
        self.gate().await?;
        self.inner.clear_namespace(ns).await
    }
    fn usage(&self) -> Usage {
        self.inner.usage()
    }
    fn stats(&self) -> StatsSnapshot {
        self.inner.stats()
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}
