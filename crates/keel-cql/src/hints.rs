//! Hinted handoff: a coordinator keeps the mutations a replica missed while
//! it was down (or did not acknowledge) and sends them when it is up again,
//! as Cassandra's `HintsService`. Hints are kept only while the replica has
//! been down for less than `max_hint_window` (Cassandra's default, 3 h);
//! after that, repair must bring it up to date.
//!
//! Kept in memory, at most [`HINTS_MAX_BYTES`] per replica, and on disk:
//! one file per replica (`hints/node-N.log` beside the table engine's
//! directory), each hint a commit-log record with its CRC, appended as it is
//! kept and fsynced every [`SYNC_EVERY`] (Cassandra flushes its hint files
//! every 10 s). A coordinator that restarts reads them back, stopping at the
//! first torn or corrupt record (a crash mid-append), so a process crash
//! loses no hint and a machine crash at most the last second's. A replica's
//! file goes once all its hints are delivered; a hint delivered again after
//! a restart is harmless (cells reconcile by timestamp). A hint is never
//! needed for an acknowledged write to survive: the level's replicas hold it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_table::engine::commitlog;
use keel_table::Mutation;

use crate::coordinator::WRITE_TIMEOUT;
use crate::exec::Node;
use crate::internode::{Reply, Request};

/// Most bytes of hints kept for one replica.
pub const HINTS_MAX_BYTES: usize = 64 << 20;
/// How often a coordinator looks for replicas with hints that are up again.
pub const REPLAY_EVERY: Duration = Duration::from_millis(200);
/// How often hint files written since are fsynced.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    /// When the first hint of this outage was kept.
    since: Option<Instant>,
    mutations: VecDeque<Mutation>,
    bytes: usize,
    /// The replica's hint file, appended to; and whether it needs an fsync.
    file: Option<File>,
    dirty: bool,
}

/// The hints a coordinator holds, per replica.
pub struct Hints {
    window: Duration,
    /// Where hint files live (None: in memory only).
    dir: Option<PathBuf>,
    queues: Mutex<BTreeMap<i32, Queue>>,
    pub stored: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
}

fn size(m: &Mutation) -> usize {
    m.iter().map(|(k, c)| k.len() + c.encoded_len() + 8).sum()
}

impl Hints {
    /// Hints kept in memory only, for up to `window` of a replica's outage
    /// (zero: none).
    pub fn new(window: Duration) -> Hints {
        Hints {
            window,
            dir: None,
            queues: Mutex::new(BTreeMap::new()),
            stored: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Hints kept in `dir` too, with the ones a previous run left there
    /// read back (each file up to its first torn or corrupt record, which
    /// is cut off).
    pub fn open(dir: PathBuf, window: Duration) -> std::io::Result<Hints> {
        std::fs::create_dir_all(&dir)?;
        let mut queues = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(node) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("node-")?.strip_suffix(".log"))
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let mut q = Queue::default();
            let mut at = 0;
            while let Some(len) = bytes
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            {
                let end = at + 8 + len;
                let Some(m) = bytes.get(at..end).and_then(commitlog::decode_record) else {
                    break;
                };
                q.bytes += size(&m);
                q.mutations.push_back(m);
                at = end;
            }
            if at < bytes.len() {
                tracing::warn!(
                    node,
                    "hint file cut at byte {at} of {}: torn or corrupt tail",
                    bytes.len()
                );
            }
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            file.set_len(at as u64)?;
            if q.mutations.is_empty() {
                drop(file);
                std::fs::remove_file(&path)?;
                continue;
            }
            let mut file = file;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))?;
            q.since = Some(Instant::now());
            q.file = Some(file);
            queues.insert(node, q);
        }
        let h = Hints::new(window);
        *h.queues.lock().expect("hints lock") = queues;
        Ok(Hints {
            dir: Some(dir),
            ..h
        })
    }

    fn path(&self, node: i32) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("node-{node}.log")))
    }

    /// Fsyncs the hint files written since the last call.
    pub fn sync(&self) {
        let mut queues = self.queues.lock().expect("hints lock");
        for (node, q) in queues.iter_mut().filter(|(_, q)| q.dirty) {
            if let Some(f) = &q.file {
                if let Err(e) = f.sync_data() {
                    tracing::warn!(node, "hint file fsync failed: {e}");
                }
            }
            q.dirty = false;
        }
    }

    /// Keeps `m` for `node`; false if it was not kept (hints off, the
    /// outage longer than the window, or the replica's hints full).
    pub fn store(&self, node: i32, m: Mutation) -> bool {
        if self.window.is_zero() || m.is_empty() {
            return false;
        }
        let mut queues = self.queues.lock().expect("hints lock");
        let q = queues.entry(node).or_default();
        let since = *q.since.get_or_insert_with(Instant::now);
        let n = size(&m);
        if since.elapsed() > self.window || q.bytes + n > HINTS_MAX_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if let Some(path) = self.path(node) {
            if q.file.is_none() {
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                {
                    Ok(f) => q.file = Some(f),
                    Err(e) => tracing::warn!(node, "hint file {}: {e}", path.display()),
                }
            }
            if let Some(f) = q.file.as_mut() {
                if let Err(e) = f.write_all(&commitlog::encode_record(&m)) {
                    // Kept in memory still; the file stops at a torn record.
                    tracing::warn!(node, "hint file write failed: {e}");
                }
                q.dirty = true;
            }
        }
        q.bytes += n;
        q.mutations.push_back(m);
        self.stored.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Replicas with hints waiting.
    fn waiting(&self) -> Vec<i32> {
        self.queues
            .lock()
            .expect("hints lock")
            .iter()
            .filter(|(_, q)| !q.mutations.is_empty())
            .map(|(n, _)| *n)
            .collect()
    }

    fn front(&self, node: i32) -> Option<Mutation> {
        self.queues
            .lock()
            .expect("hints lock")
            .get(&node)?
            .mutations
            .front()
            .cloned()
    }

    fn pop(&self, node: i32) {
        let mut queues = self.queues.lock().expect("hints lock");
        if let Some(q) = queues.get_mut(&node) {
            if let Some(m) = q.mutations.pop_front() {
                q.bytes -= size(&m);
            }
            if q.mutations.is_empty() {
                queues.remove(&node);
                if let Some(path) = self.path(node) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }

    /// Hints waiting for `node` (for tests and metrics).
    pub fn pending(&self, node: i32) -> usize {
        self.queues
            .lock()
            .expect("hints lock")
            .get(&node)
            .map_or(0, |q| q.mutations.len())
    }
}

/// Sends each replica that is up again the hints kept for it, oldest
/// first, until the node stops.
pub async fn replay(node: Arc<Node>) {
    let mut synced = Instant::now();
    loop {
        tokio::time::sleep(REPLAY_EVERY).await;
        if synced.elapsed() >= SYNC_EVERY {
            let hints = node.hints.clone();
            let _ = tokio::task::spawn_blocking(move || hints.sync()).await;
            synced = Instant::now();
        }
        let img = node.image();
        for id in node.hints.waiting() {
            if !node.is_up(&img, id) {
                continue;
            }
            let Some(n) = img.nodes.get(&id) else {
                continue;
            };
            let addr = format!("{}:{}", n.cql_host, n.cql_port);
            while let Some(m) = node.hints.front(id) {
                match node
                    .peers
                    .call(id, &addr, &Request::Mutate(m), WRITE_TIMEOUT)
                    .await
                {
                    Ok(Reply::Done) => {
                        node.hints.pop(id);
                        node.hints.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_table::Cell;

    #[test]
    fn hints_are_kept_in_order_bounded_and_off_at_zero() {
        let m = |v: u8| -> Mutation { vec![(vec![v], Cell::live(1, vec![v]))] };
        let h = Hints::new(Duration::from_secs(60));
        assert!(h.store(2, m(1)) && h.store(2, m(2)));
        assert_eq!(h.waiting(), vec![2]);
        assert_eq!(h.front(2), Some(m(1)));
        h.pop(2);
        assert_eq!(h.front(2), Some(m(2)));
        h.pop(2);
        assert!(h.waiting().is_empty() && h.pending(2) == 0);
        let off = Hints::new(Duration::ZERO);
        assert!(!off.store(2, m(1)));
        let big: Mutation = vec![(vec![0], Cell::live(1, vec![0; HINTS_MAX_BYTES]))];
        assert!(!h.store(3, big));
        assert_eq!(h.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn hints_on_disk_come_back_after_a_restart_up_to_a_torn_tail() {
        let m = |v: u8| -> Mutation { vec![(vec![v], Cell::live(1, vec![v; 100]))] };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hints");
        let h = Hints::open(path.clone(), Duration::from_secs(60)).unwrap();
        for v in 1..=3 {
            assert!(h.store(2, m(v)));
        }
        assert!(h.store(5, m(9)));
        h.pop(5); // delivered: its file goes
        h.sync();
        drop(h);
        assert!(!path.join("node-5.log").exists());
        // A crash mid-append: half a record at the end.
        let file = path.join("node-2.log");
        let mut bytes = std::fs::read(&file).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(&commitlog::encode_record(&m(4))[..20]);
        std::fs::write(&file, &bytes).unwrap();
        let h = Hints::open(path.clone(), Duration::from_secs(60)).unwrap();
        assert_eq!(h.pending(2), 3);
        assert_eq!(h.front(2), Some(m(1)));
        assert_eq!(std::fs::metadata(&file).unwrap().len() as usize, whole);
        // Appends go after what was kept.
        assert!(h.store(2, m(5)));
        h.sync();
        drop(h);
        let h = Hints::open(path, Duration::from_secs(60)).unwrap();
        assert_eq!(h.pending(2), 4);
        for _ in 0..4 {
            h.pop(2);
        }
        assert!(!file.exists());
    }
}
