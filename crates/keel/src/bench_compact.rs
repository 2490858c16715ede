//! `keel bench compact`: the log cleaner's throughput, in process. It writes a
//! keyed log straight through `keel-storage` (no network, no node), fsyncs it,
//! then runs compaction passes until none is due, as the node's cleaner would
//! with `min.cleanable.dirty.ratio=0`. What it reports is the cleaner's own
//! speed, to compare with the disk's sequential rate.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use keel_storage::batch;
use keel_storage::{CleanerConfig, Log, LogConfig};

#[derive(clap::Args)]
pub struct CompactArgs {
    /// Records to write before compacting.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Distinct keys, chosen uniformly at random for each record.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    record_size: u32,
    /// Records per batch.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_records: u32,
    /// segment.bytes of the log.
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    segment_bytes: u64,
    /// The key map's memory (log.cleaner.dedupe.buffer.size); smaller than the
    /// keys need means several passes.
    #[arg(long, default_value_t = 128 << 20)]
    dedupe_buffer_size: usize,
    /// Where to write the log (a fresh directory is made in it and removed after).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Drop the page cache before compacting (Linux, root), so the cleaner reads
    /// from disk as it would a log written long ago.
    #[arg(long)]
    cold: bool,
}

/// A small xorshift generator: the bench needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

pub fn run(a: CompactArgs) -> Result<()> {
    let dir = a
        .dir
        .join(format!("keel-bench-compact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = bench(&a, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(a: &CompactArgs, dir: &std::path::Path) -> Result<()> {
    let config = LogConfig {
        segment_bytes: a.segment_bytes,
        segment_ms: 1_000,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir, config, 0).context("open the bench log")?;
    let value = vec![b'v'; a.record_size as usize];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let mut written = 0u64;
    let mut last_report = Instant::now();
    while written < a.records {
        let n = u64::from(a.batch_records).min(a.records - written);
        let keys: Vec<Vec<u8>> = (0..n)
            .map(|_| format!("key-{:010}", rng.below(a.keys)).into_bytes())
            .collect();
        let kvs: Vec<batch::KeyValue> = keys
            .iter()
            .map(|k| (Some(k.as_slice()), Some(value.as_slice())))
            .collect();
        let mut b = batch::build(0, &kvs);
        log.append(&mut b, 0, false, 0)?;
        written += n;
        if last_report.elapsed().as_secs() >= 1 {
            eprintln!("  wrote {written}/{} records", a.records);
            last_report = Instant::now();
        }
    }
    // The cleaner never touches the active segment: one last record, a second
    // later by the log's clock, rolls (segment.ms) everything written into
    // closed segments.
    let mut last = batch::build(0, &[(Some(b"end".as_slice()), Some(b"".as_slice()))]);
    log.append(&mut last, 0, false, 2_000)?;
    if let Some(job) = log.flush_job() {
        job.run().context("fsync the bench log")?;
        log.complete_flush(&job)?;
    }
    let write_secs = started.elapsed().as_secs_f64();
    let before = log.size_bytes();
    if a.cold {
        std::fs::write("/proc/sys/vm/drop_caches", "3\n")
            .context("--cold: drop the page cache (needs root on Linux)")?;
    }

    let cfg = CleanerConfig {
        min_dirty_ratio: 0.0,
        ..CleanerConfig::default()
    };
    let max_keys = a.dedupe_buffer_size / keel_storage::BYTES_PER_KEY;
    let abort = AtomicBool::new(false);
    let (mut passes, mut read, mut removed, mut largest_map) = (0u32, 0u64, 0u64, 0usize);
    let mut longest_install = std::time::Duration::ZERO;
    let started = Instant::now();
    while let Some(plan) = log.compaction_plan(0, &cfg) {
        let pass = Instant::now();
        let done = keel_storage::compact(&plan, 0, max_keys, &abort)?;
        passes += 1;
        read += done.bytes_read;
        removed += done.records_removed;
        largest_map = largest_map.max(done.keys_mapped);
        eprintln!(
            "  pass {passes}: {} keys mapped, {} records removed, {:.1} MiB read in {:.2} s",
            done.keys_mapped,
            done.records_removed,
            done.bytes_read as f64 / f64::from(1 << 20),
            pass.elapsed().as_secs_f64()
        );
        let install = Instant::now();
        log.install_compaction(done, 0)?;
        longest_install = longest_install.max(install.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    let after = log.size_bytes();
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let rows = vec![
        vec!["records written".into(), written.to_string()],
        vec!["distinct keys".into(), a.keys.to_string()],
        vec![
            "log before".into(),
            format!("{:.1} MiB ({:.1} s to write)", mib(before), write_secs),
        ],
        vec!["log after".into(), format!("{:.1} MiB", mib(after))],
        vec!["records removed".into(), removed.to_string()],
        vec!["passes".into(), passes.to_string()],
        vec!["largest key map".into(), format!("{largest_map} keys")],
        vec!["compaction time".into(), format!("{secs:.2} s")],
        vec![
            "longest install".into(),
            format!(
                "{:.1} ms (under the partition's lock)",
                longest_install.as_secs_f64() * 1000.0
            ),
        ],
        vec![
            "read throughput".into(),
            format!("{:.1} MiB/s", mib(read) / secs),
        ],
        vec![
            "log throughput".into(),
            format!("{:.1} MiB/s of log cleaned", mib(before) / secs),
        ],
    ];
    print!("{}", crate::cli::render(&rows));
    Ok(())
}
