//! Redis key names and the Lua scripts that read and write them.
//!
//! Every key is built from the tier's prefix and hashes, never from user strings:
//!
//! - `{prefix}:{namespace id}:epoch`: the namespace's epoch, a decimal integer;
//! - `{prefix}:{namespace id}:{epoch}:{key hash}`: one entry, holding one cache-core record.
//!
//! The namespace id is its 32-hex-digit `NamespaceId`, the key hash the key's 64-hex-digit
//! BLAKE3 hash. `clear_namespace` increments the epoch, so every entry of the old epoch becomes
//! unreachable at once; a background sweep then unlinks them. The scripts read the epoch and the
//! entry in one round trip and atomically, so a put that races a clear lands either before it
//! (and is cleared) or after it (under the new epoch), never in between.
//!
//! The tier also remembers each namespace's epoch as it last read it and, on that fast path,
//! sends plain commands instead: `GET` (or `SET`) of the entry under the remembered epoch, then
//! `GET` of the epoch key, pipelined. Epochs only grow, so if the epoch read after the entry is
//! the remembered one, it was that epoch when the entry was read or written; otherwise the
//! tier learns the new epoch and repeats the operation with the script.
//!
//! A missing epoch key (never written, or evicted by an `allkeys-*` maxmemory policy) reads as
//! "no entries": gets miss, and the next put starts the namespace at an epoch taken from the
//! server's clock in microseconds, far above any epoch an `INCR` sequence started earlier can
//! have reached, so entries of a forgotten epoch are never read again.

use cache_core::{Error, Key, KeyHash, Namespace, NamespaceId, Result};

use crate::tier::TIER;

/// The longest prefix accepted.
pub(crate) const MAX_PREFIX_LEN: usize = 128;

/// `GET` of many entries. `KEYS[i]` is the epoch key of entry `i`, `ARGV[i]` its key hash.
/// Returns one bulk string or nil per entry, then the epoch (or nil) of each entry's namespace.
pub(crate) const GET_SCRIPT: &str = r"
local out = {}
local epochs = {}
for i = 1, #KEYS do
  local ek = KEYS[i]
  local e = epochs[ek]
  if e == nil then
    e = redis.call('GET', ek)
    epochs[ek] = e
  end
  if e then
    out[i] = redis.call('GET', string.sub(ek, 1, -6) .. e .. ':' .. ARGV[i])
  else
    out[i] = false
  end
  out[#KEYS + i] = e
end
return out
";

/// `SET` of many entries. `KEYS[i]` is the epoch key of entry `i`; `ARGV[3i-2]` its key hash,
/// `ARGV[3i-1]` its expiry in milliseconds (0 for none), `ARGV[3i]` the record. A missing epoch
/// starts at the server's time in microseconds. Returns the epoch each entry was written under.
pub(crate) const PUT_SCRIPT: &str = r"
local out = {}
for i = 1, #KEYS do
  local ek = KEYS[i]
  local e = redis.call('GET', ek)
  if not e then
    local t = redis.call('TIME')
    e = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('SET', ek, e)
  end
  local k = string.sub(ek, 1, -6) .. e .. ':' .. ARGV[3 * i - 2]
  local px = tonumber(ARGV[3 * i - 1])
  if px > 0 then
    redis.call('SET', k, ARGV[3 * i], 'PX', px)
  else
    redis.call('SET', k, ARGV[3 * i])
  end
  out[i] = e
end
return out
";

/// `DEL` of many entries. `KEYS[i]` is the epoch key of entry `i`, `ARGV[i]` its key hash.
/// Returns the number of entries that existed.
pub(crate) const DEL_SCRIPT: &str = r"
local n = 0
for i = 1, #KEYS do
  local ek = KEYS[i]
  local e = redis.call('GET', ek)
  if e then
    n = n + redis.call('DEL', string.sub(ek, 1, -6) .. e .. ':' .. ARGV[i])
  end
end
return n
";

/// Clears a namespace: `KEYS[1]` is its epoch key. Returns the old epoch (0 if there was none)
/// and the new one.
pub(crate) const CLEAR_SCRIPT: &str = r"
local old = redis.call('GET', KEYS[1])
if not old then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])))
  old = '0'
end
local new = redis.call('INCR', KEYS[1])
return { old, tostring(new) }
";

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    prefix: String,
}

impl Layout {
    /// Checks `prefix`: 1 to [`MAX_PREFIX_LEN`] characters of `[A-Za-z0-9_./-]`, so it needs no
    /// escaping in a `SCAN MATCH` pattern and cannot contain the `:` separator.
    pub(crate) fn new(prefix: &str) -> Result<Layout> {
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid(
                TIER,
                format!("the key prefix must be 1 to {MAX_PREFIX_LEN} characters long"),
            ));
        }
        if let Some(c) = prefix
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')))
        {
            return Err(Error::invalid(
                TIER,
                format!(
                    "the key prefix may hold only A-Z, a-z, 0-9, '_', '.', '/' and '-', not {c:?}"
                ),
            ));
        }
        Ok(Layout { prefix: prefix.to_owned() })
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The epoch key of `namespace`.
    pub(crate) fn epoch_key(&self, namespace: &Namespace) -> String {
        self.epoch_key_of(namespace.id())
    }

    pub(crate) fn epoch_key_of(&self, namespace: NamespaceId) -> String {
        format!("{}:{}:epoch", self.prefix, namespace.to_hex())
    }

    /// The key of an entry of `namespace` at `epoch`.
    pub(crate) fn entry_key(&self, namespace: NamespaceId, epoch: &str, hash: &KeyHash) -> String {
        format!("{}:{}:{epoch}:{}", self.prefix, namespace.to_hex(), hash.to_hex())
    }

    /// The `SCAN MATCH` pattern of every key of `namespace` (its entries and its epoch key).
    pub(crate) fn namespace_pattern(&self, namespace: NamespaceId) -> String {
        format!("{}:{}:*", self.prefix, namespace.to_hex())
    }

    /// The epoch in an entry key of this layout, or `None` for any other key.
    pub(crate) fn epoch_in(&self, key: &str) -> Option<u64> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        let mut parts = rest.split(':');
        let (_ns, epoch, hash) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || hash.len() != 64 {
            return None;
        }
        epoch.parse().ok()
    }

    /// The script arguments of `key`: its epoch key and its hash.
    pub(crate) fn script_key(&self, key: &Key) -> (String, String) {
        (self.epoch_key(key.namespace()), key.hash().to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_from_hashes_only() {
        let layout = Layout::new("tc/test").unwrap();
        let key = Key::new("tenant:a/../b", "user text *?[]").unwrap();
        let (epoch, hash) = layout.script_key(&key);
        assert_eq!(epoch, format!("tc/test:{}:epoch", key.namespace().id().to_hex()));
        assert_eq!(hash.len(), 64);
        let entry = layout.entry_key(key.namespace().id(), "7", key.hash());
        // What the scripts build: the epoch key without `epoch`, then the epoch and the hash.
        assert_eq!(entry, format!("{}7:{hash}", &epoch[..epoch.len() - 5]));
        assert!(!entry.contains("tenant") && !entry.contains('*'));
        assert_eq!(layout.epoch_in(&entry), Some(7));
        assert_eq!(layout.epoch_in(&epoch), None);
        assert!(layout.namespace_pattern(key.namespace().id()).ends_with(":*"));
    }

    #[test]
    fn prefixes_are_checked() {
        for bad in ["", "a:b", "a*", "a b", "ä", &"p".repeat(MAX_PREFIX_LEN + 1)] {
            assert!(Layout::new(bad).is_err(), "{bad:?}");
        }
        assert!(Layout::new("tiered-cache/prod_1.v2").is_ok());
    }
}
