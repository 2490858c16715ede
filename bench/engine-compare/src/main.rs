//! Keel's own LSM engine (`keel-table`) against fjall, on the tables face's
//! pattern: single-cell writes each acknowledged only after the fdatasync
//! that covers it, from 1 and from 64 concurrent writers, then point reads of
//! random cells after a flush. Both engines store the same bytes (Keel's
//! cell keys, each value Keel's encoded cell) in a directory under the
//! current one, so both pay the same disk.
//!
//! fjall is run two ways: each writer committing with fjall's own
//! durability (`PersistMode::SyncData` per commit), and behind the same
//! group commit Keel's commit log does (one thread gathers every write
//! waiting, commits them as one batch, fdatasyncs once, answers all).
//!
//! ```sh
//! cargo run --release --manifest-path bench/engine-compare/Cargo.toml -- [WRITES_64] [READS]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use keel_table::cell::{self, Cell, TABLE_ID_LEN};
use keel_table::engine::{Engine, EngineConfig};

const TABLE: [u8; TABLE_ID_LEN] = *b"bench.engine.cmp";
const VALUE_BYTES: usize = 100;
const MEMTABLE_BYTES: usize = 64 << 20;

/// The key and encoded cell of row `i` (8-byte partition key, one column).
fn cell_of(i: u64, ts: i64) -> (Vec<u8>, Cell) {
    let token = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64;
    let p = cell::partition_prefix(&TABLE, token, &i.to_be_bytes());
    let key = cell::cell_key(&cell::row_prefix(&p, &[]), cell::FIRST_COLUMN_ID + 1);
    (key, Cell::live(ts, vec![(i % 251) as u8; VALUE_BYTES]))
}

fn encoded(c: &Cell) -> Vec<u8> {
    let mut v = Vec::with_capacity(c.encoded_len());
    c.encode_into(&mut v);
    v
}

/// A store under test: a durable single-cell write and a point read.
trait Store: Send + Sync {
    fn put(&self, key: Vec<u8>, cell: Cell);
    fn get(&self, key: &[u8]) -> bool;
    fn flush(&self);
}

struct Keel(Engine);

impl Store for Keel {
    fn put(&self, key: Vec<u8>, cell: Cell) {
        self.0
            .write_blocking(vec![(key, cell)])
            .expect("keel write");
    }
    fn get(&self, key: &[u8]) -> bool {
        let mut end = key.to_vec();
        end.push(0);
        matches!(self.0.scan(key, &end, None).next(), Some(Ok(_)))
    }
    fn flush(&self) {
        self.0.flush().expect("keel flush");
    }
}

/// fjall, each writer persisting its own commit.
struct FjallOwn {
    db: Database,
    ks: Keyspace,
}

impl Store for FjallOwn {
    fn put(&self, key: Vec<u8>, cell: Cell) {
        let mut b = self.db.batch().durability(Some(PersistMode::SyncData));
        b.insert(&self.ks, key, encoded(&cell));
        b.commit().expect("fjall commit");
    }
    fn get(&self, key: &[u8]) -> bool {
        self.ks.get(key).expect("fjall get").is_some()
    }
    fn flush(&self) {
        self.ks.rotate_memtable_and_wait().expect("fjall flush");
    }
}

type Pending = (Vec<u8>, Vec<u8>, mpsc::SyncSender<()>);

/// fjall behind a group commit like Keel's commit log.
struct FjallGroup {
    ks: Keyspace,
    tx: std::sync::Mutex<mpsc::Sender<Pending>>,
}

impl FjallGroup {
    fn new(db: Database, ks: Keyspace) -> FjallGroup {
        let (tx, rx) = mpsc::channel::<Pending>();
        let k = ks.clone();
        std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut acks = Vec::new();
                let mut b = db.batch();
                let mut add = |(key, val, ack): Pending| {
                    b.insert(&k, key, val);
                    acks.push(ack);
                };
                add(first);
                while let Ok(p) = rx.try_recv() {
                    add(p);
                }
                b.commit().expect("fjall commit");
                db.persist(PersistMode::SyncData).expect("fjall persist");
                for a in acks {
                    let _ = a.send(());
                }
            }
        });
        FjallGroup {
            ks,
            tx: std::sync::Mutex::new(tx),
        }
    }
}

impl Store for FjallGroup {
    fn put(&self, key: Vec<u8>, cell: Cell) {
        let (ack, done) = mpsc::sync_channel(1);
        let tx = self.tx.lock().expect("lock").clone();
        tx.send((key, encoded(&cell), ack)).expect("committer");
        done.recv().expect("committer answers");
    }
    fn get(&self, key: &[u8]) -> bool {
        self.ks.get(key).expect("fjall get").is_some()
    }
    fn flush(&self) {
        self.ks.rotate_memtable_and_wait().expect("fjall flush");
    }
}

/// Runs `total` operations over `threads` threads; ops/s and p50/p99.
fn run(threads: usize, total: usize, op: impl Fn(u64) + Sync) -> (f64, Duration, Duration) {
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    let mut lat: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut l = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return l;
                        }
                        let t = Instant::now();
                        op(i as u64);
                        l.push(t.elapsed());
                    }
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (total as f64 / secs, pct(0.50), pct(0.99))
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        n += if m.is_dir() {
            dir_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn bench(
    name: &str,
    store: &dyn Store,
    dir: &std::path::Path,
    one: usize,
    many: usize,
    reads: usize,
) {
    let line = |what: &str, (rate, p50, p99): (f64, Duration, Duration)| {
        println!(
            "| {name} | {what} | {rate:.0}/s | {:.2} / {:.2} ms |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        )
    };
    let ts = |i: u64| 1_700_000_000_000_000 + i as i64;
    // Keys of the one-writer run come after the 64-writer run's.
    let base = many as u64;
    line(
        "write, 1 writer",
        run(1, one, |i| {
            let (k, c) = cell_of(base + i, ts(i));
            store.put(k, c)
        }),
    );
    line(
        "write, 64 writers",
        run(64, many, |i| {
            let (k, c) = cell_of(i, ts(i));
            store.put(k, c)
        }),
    );
    let t = Instant::now();
    store.flush();
    let flushed = t.elapsed();
    let total = (many + one) as u64;
    line(
        "read, 2 readers",
        run(2, reads, |i| {
            let k = cell_of(i.wrapping_mul(7_919) % total, 0).0;
            assert!(store.get(&k), "a written cell is missing");
        }),
    );
    println!(
        "| {name} | flush {:.0} ms, {:.1} MiB on disk | | |",
        flushed.as_secs_f64() * 1e3,
        dir_bytes(dir) as f64 / (1 << 20) as f64
    );
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a count"));
    let many = args.next().unwrap_or(200_000);
    let reads = args.next().unwrap_or(200_000);
    let one = (many / 20).max(1);
    println!("| engine | load | rate | p50 / p99 |\n| --- | --- | --- | --- |");
    {
        let d = tempfile::tempdir_in(".").expect("tempdir");
        let mut cfg = EngineConfig::new(d.path());
        cfg.memtable_bytes = MEMTABLE_BYTES;
        let (e, _) = Engine::open(cfg).expect("keel engine");
        let e = Keel(e);
        bench("keel-table", &e, d.path(), one, many, reads);
        e.0.shutdown();
    }
    let open = |d: &std::path::Path| {
        let db = Database::builder(d).open().expect("fjall open");
        let ks = db
            .keyspace("cells", || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES as u64)
            })
            .expect("fjall keyspace");
        (db, ks)
    };
    {
        let d = tempfile::tempdir_in(".").expect("tempdir");
        let (db, ks) = open(d.path());
        bench(
            "fjall 3.1.13, group commit",
            &FjallGroup::new(db, ks),
            d.path(),
            one,
            many,
            reads,
        );
    }
    {
        let d = tempfile::tempdir_in(".").expect("tempdir");
        let (db, ks) = open(d.path());
        bench(
            "fjall 3.1.13, SyncData per commit",
            &FjallOwn { db, ks },
            d.path(),
            one,
            many,
            reads,
        );
    }
}
