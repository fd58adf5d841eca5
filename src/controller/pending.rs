//! Kept results of the controller link: `save_uplink` / `update_vm_result`
//! calls that could not be delivered, newest per key, persisted in
//! `{state_dir}/pending-results.json` (temp file + rename) so they survive a
//! restart.
//!
//! Owns: the pending map and its file. Calls only the file system.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the pending store inside `state_dir`.
pub(crate) const PENDING_FILE: &str = "pending-results.json";

/// Most results kept at once (one per port, plus `uplink`). A compute host
/// has a few hundred ports; a controller announcing more distinct ports
/// than this while not taking results is hostile or broken: the oldest VM
/// result is then dropped (logged) so memory and the file stay bounded.
pub(crate) const MAX_KEPT: usize = 16_384;

/// One RPC call kept for retry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingCall {
    /// `uplink` for `save_uplink`, `vm:<port_uuid>` for `update_vm_result`.
    pub key: String,
    pub method: String,
    pub context: Value,
    pub args: Value,
    /// Generation: larger = newer. Used so an old call never replaces a newer one.
    pub gen: u64,
    /// `ctime()` of the original call.
    pub created: String,
}

impl PendingCall {
    /// A call made now (`created` = `ctime()` now).
    pub(crate) fn new(key: String, method: &str, context: Value, args: Value, gen: u64) -> Self {
        PendingCall {
            key,
            method: method.to_string(),
            context,
            args,
            gen,
            created: crate::model::ctime_now(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    calls: Vec<PendingCall>,
}

/// The pending calls, newest per key.
#[derive(Debug)]
pub(crate) struct PendingStore {
    path: PathBuf,
    calls: BTreeMap<String, PendingCall>,
}

impl PendingStore {
    /// Load `{state_dir}/pending-results.json`. A missing file is an empty
    /// store; an unreadable or corrupt one is moved aside to `*.bad` (logged)
    /// so the daemon still starts.
    pub(crate) fn load(state_dir: &Path) -> PendingStore {
        let path = state_dir.join(PENDING_FILE);
        let removed = crate::fsutil::remove_stale_temps(&path);
        if removed > 0 {
            log::warn!(
                "removed {removed} temp file(s) a crashed run left next to {}",
                path.display()
            );
        }
        let mut store = PendingStore {
            path,
            calls: BTreeMap::new(),
        };
        let text = match std::fs::read(&store.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return store,
            Err(e) => {
                log::error!("cannot read {}: {e}", store.path.display());
                return store;
            }
        };
        match serde_json::from_slice::<FileFormat>(&text) {
            Ok(f) => {
                for c in f.calls {
                    let newer = store
                        .calls
                        .get(&c.key)
                        .map(|old| old.gen < c.gen)
                        .unwrap_or(true);
                    if newer {
                        store.calls.insert(c.key.clone(), c);
                    }
                }
                if !store.calls.is_empty() {
                    log::info!(
                        "loaded {} pending controller result(s) from {}",
                        store.calls.len(),
                        store.path.display()
                    );
                }
            }
            Err(e) => {
                let bad = store.path.with_extension("json.bad");
                log::error!(
                    "{} is corrupt ({e}); moved to {}",
                    store.path.display(),
                    bad.display()
                );
                let _ = std::fs::rename(&store.path, &bad);
            }
        }
        crate::metrics::set_pending_results(store.calls.len());
        store
    }

    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&PendingCall> {
        self.calls.get(key)
    }

    /// Largest generation stored (0 when empty).
    pub(crate) fn max_gen(&self) -> u64 {
        self.calls.values().map(|c| c.gen).max().unwrap_or(0)
    }

    /// Keep `call` unless a newer one for the same key is already kept.
    /// Returns whether the store changed.
    pub(crate) fn keep(&mut self, call: PendingCall) -> bool {
        match self.calls.get(&call.key) {
            Some(old) if old.gen >= call.gen => false,
            old => {
                if old.is_none() && self.calls.len() >= MAX_KEPT {
                    self.evict_oldest_vm_result();
                }
                self.calls.insert(call.key.clone(), call);
                crate::metrics::set_pending_results(self.calls.len());
                true
            }
        }
    }

    /// Drop the oldest `update_vm_result` (never the uplink's call).
    fn evict_oldest_vm_result(&mut self) {
        let oldest = self
            .calls
            .values()
            .filter(|c| c.key.starts_with("vm:"))
            .min_by_key(|c| c.gen)
            .map(|c| c.key.clone());
        if let Some(k) = oldest {
            log::error!("more than {MAX_KEPT} undelivered results: dropping the oldest ({k})");
            self.calls.remove(&k);
        }
    }

    /// Drop the entry for `key` if it is not newer than `gen` (a call of
    /// generation `gen` was delivered). Returns whether the store changed.
    pub(crate) fn delivered(&mut self, key: &str, gen: u64) -> bool {
        match self.calls.get(key) {
            Some(old) if old.gen <= gen => {
                self.calls.remove(key);
                crate::metrics::set_pending_results(self.calls.len());
                true
            }
            _ => false,
        }
    }

    /// All kept calls, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<PendingCall> {
        let mut v: Vec<PendingCall> = self.calls.values().cloned().collect();
        v.sort_by_key(|c| c.gen);
        v
    }

    /// Write the store atomically (`fsutil::write_atomic`: private temp
    /// file created exclusively, fsync, rename; nothing left on failure).
    #[cfg(test)]
    pub(crate) fn persist(&self) -> std::io::Result<()> {
        crate::fsutil::write_atomic(&self.path, &self.encode()?)
    }

    /// The file's contents now (for a write outside the owner's lock).
    pub(crate) fn encode(&self) -> std::io::Result<Vec<u8>> {
        let f = FileFormat {
            version: 1,
            calls: self.snapshot(),
        };
        serde_json::to_vec_pretty(&f).map_err(std::io::Error::other)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(key: &str, gen: u64) -> PendingCall {
        PendingCall::new(
            key.into(),
            "update_vm_result",
            json!({}),
            json!({"gen": gen}),
            gen,
        )
    }

    #[test]
    fn bounded_by_dropping_the_oldest_vm_result() {
        let dir = std::env::temp_dir().join(format!("pend-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = PendingStore::load(&dir);
        assert!(s.keep(call("uplink", 1)));
        for i in 0..MAX_KEPT as u64 + 10 {
            s.keep(call(&format!("vm:{i}"), i + 2));
        }
        assert_eq!(s.len(), MAX_KEPT);
        assert!(
            s.get("uplink").is_some(),
            "the uplink's call is never dropped"
        );
        assert!(s.get("vm:0").is_none(), "the oldest went first");
        assert!(s.get(&format!("vm:{}", MAX_KEPT as u64 + 9)).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn newest_wins_and_survives_reload() {
        let dir = std::env::temp_dir().join(format!("ct-pending-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = PendingStore::load(&dir);
        assert!(s.keep(call("vm:a", 2)));
        assert!(!s.keep(call("vm:a", 1)), "older must not replace newer");
        assert!(s.keep(call("vm:a", 3)));
        assert!(s.keep(call("uplink", 4)));
        assert!(
            !s.delivered("vm:a", 2),
            "older delivery keeps newer pending"
        );
        s.persist().unwrap();
        let s2 = PendingStore::load(&dir);
        assert_eq!(s2.len(), 2);
        assert_eq!(s2.get("vm:a").unwrap().gen, 3);
        assert_eq!(s2.max_gen(), 4);
        std::fs::write(dir.join(PENDING_FILE), b"{not json").unwrap();
        let s3 = PendingStore::load(&dir);
        assert!(s3.is_empty());
        assert!(dir.join("pending-results.json.bad").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
