//! The ordering state: per-key stripe counters, snapshots of them, the in-flight write counts
//! and the stale marks, which keep a background copy from undoing a foreground write.
//!
//! How the pieces fit together is in the crate docs, under
//! [Ordering against stale values](crate#ordering-against-stale-values): each key maps to one of
//! [`STRIPES`] counters, and an entry evicted in the middle of its own put is recognised by its
//! [`ident`].

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use cache_core::{Entry, Key};

use crate::tiered::Shared;

/// Number of per-key ordering counters.
pub(crate) const STRIPES: usize = 1 << 14;

/// The ordering counters that cover one key, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snap {
    stripe: u64,
    clear: u64,
    /// Set when the snapshot was taken while a write was in flight on the key's stripe: the
    /// identity ([`ident`]) of the value being copied, so the copy may still go ahead if that
    /// in-flight write was the put of this very value (see [`Shared::still_valid`]).
    pub(super) mid_write: Option<u64>,
}

/// Identifies one put's entry: the key, the value's allocation and length, and the metadata. A
/// copy of the entry (a demoted one, say) shares the allocation, and while the copy is alive no
/// other value can reuse it; a re-put of the same `Bytes` differs in its stamped metadata unless
/// it is the same entry in effect.
fn ident(key: &Key, entry: &Entry) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash().prefix_u64().hash(&mut h);
    (entry.value.as_ptr() as usize).hash(&mut h);
    entry.value.len().hash(&mut h);
    entry.meta.created_at.hash(&mut h);
    entry.meta.expires_at.hash(&mut h);
    entry.meta.version.hash(&mut h);
    h.finish() | 1
}

impl Shared {
    fn stripe_index(key: &Key) -> usize {
        (key.hash().prefix_u64() as usize) % STRIPES
    }

    fn stripe(&self, key: &Key) -> &AtomicU64 {
        &self.stripes[Shared::stripe_index(key)]
    }

    /// Whether a background copy taken at `snap` may still be written: nothing wrote, removed
    /// or cleared the key since, and nothing is doing so now.
    ///
    /// A snapshot taken in the middle of a write (a tier evicting the value a put is storing,
    /// e.g. an admission policy turning it away at once) is still valid when exactly that one
    /// write has finished since, and it was the put of this value: its identity is the stripe's
    /// last put identity. Anything else on the stripe in between makes the copy invalid.
    pub(super) fn still_valid(&self, key: &Key, snap: Snap) -> bool {
        let idx = Shared::stripe_index(key);
        if self.clearing.load(Ordering::SeqCst) != 0
            || self.inflight[idx].load(Ordering::SeqCst) != 0
        {
            return false;
        }
        let now = self.stripes[idx].load(Ordering::SeqCst);
        let clear = self.clear_epoch.load(Ordering::SeqCst);
        if clear != snap.clear {
            return false;
        }
        match snap.mid_write {
            None => now == snap.stripe,
            Some(id) => now == snap.stripe + 1 && self.put_ident[idx].load(Ordering::SeqCst) == id,
        }
    }

    pub(super) fn snap(&self, key: &Key) -> Snap {
        Snap {
            stripe: self.stripe(key).load(Ordering::SeqCst),
            clear: self.clear_epoch.load(Ordering::SeqCst),
            mid_write: None,
        }
    }

    /// Waits (up to 100 ms) until no foreground write is in flight on `key`'s stripe, so a copy
    /// whose snapshot was taken in the middle of a put can be judged once that put is over.
    pub(super) async fn wait_for_writes(&self, key: &Key) {
        let idx = Shared::stripe_index(key);
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut round = 0u32;
        while self.inflight[idx].load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            if round < 16 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            round += 1;
        }
    }

    /// The snapshot for copying `entry` of `key` out of a tier that just evicted it.
    pub(super) fn snap_evicted(&self, key: &Key, entry: &Entry) -> Snap {
        let idx = Shared::stripe_index(key);
        let in_flight = self.inflight[idx].load(Ordering::SeqCst) != 0;
        let mut snap = self.snap(key);
        if in_flight {
            snap.mid_write = Some(ident(key, entry));
        }
        snap
    }

    /// Records whether tier `i` holds the latest write for `key`.
    pub(super) fn set_stale(&self, i: usize, key: &Key, stale: bool) {
        if !stale && self.stale_len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut set = self.stale.lock();
        let changed = if stale {
            set.insert((i, key.hash().prefix_u64()))
        } else {
            set.remove(&(i, key.hash().prefix_u64()))
        };
        if changed {
            self.stale_len.store(set.len(), Ordering::Release);
        }
    }

    pub(super) fn is_stale(&self, i: usize, key: &Key) -> bool {
        self.stale_len.load(Ordering::Acquire) > 0
            && self.stale.lock().contains(&(i, key.hash().prefix_u64()))
    }

    /// Starts a foreground write of `key`: a put of `entry`, or a removal when `None`.
    pub(super) fn begin_write(&self, key: &Key, entry: Option<&Entry>) {
        let idx = Shared::stripe_index(key);
        self.inflight[idx].fetch_add(1, Ordering::SeqCst);
        self.put_ident[idx].store(entry.map_or(0, |e| ident(key, e)), Ordering::SeqCst);
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn end_write(&self, key: &Key) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
        self.inflight[Shared::stripe_index(key)].fetch_sub(1, Ordering::SeqCst);
    }
}
