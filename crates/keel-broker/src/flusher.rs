//! Group commit: one thread fsyncs every partition with unflushed appends, in
//! parallel, and then releases every producer waiting on any of them. Producers
//! that arrive while an fsync runs share the next one, so the fsync rate stays
//! near the disk's (~3 ms each here) however many producers there are.

use std::sync::{Arc, Condvar, Mutex};

use crate::broker::Partition;

/// At most this many fsyncs run at once in a round.
const FSYNC_PARALLEL_MAX: usize = 8;

#[derive(Default)]
struct Queue {
    pending: Vec<Arc<Partition>>,
    stop: bool,
}

#[derive(Default)]
pub(crate) struct Flusher {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Flusher {
    /// Asks for `p` to be flushed in the next round. The caller has set `p.queued`.
    pub fn enqueue(&self, p: Arc<Partition>) {
        let mut q = self.queue.lock().expect("flusher queue lock");
        q.pending.push(p);
        drop(q);
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.queue.lock().expect("flusher queue lock").stop = true;
        self.wake.notify_one();
    }

    /// The flusher thread's loop; returns after `stop` once the queue is drained.
    /// `after_round` runs once per round (the broker wakes fetchers there).
    pub fn run(&self, after_round: impl Fn()) {
        loop {
            let batch = {
                let mut q = self.queue.lock().expect("flusher queue lock");
                while q.pending.is_empty() && !q.stop {
                    q = self.wake.wait(q).expect("flusher queue lock");
                }
                if q.pending.is_empty() && q.stop {
                    return;
                }
                std::mem::take(&mut q.pending)
            };
            let jobs: Vec<_> = batch
                .into_iter()
                .filter_map(|p| p.take_flush_job().map(|j| (p, j)))
                .collect();
            if jobs.is_empty() {
                continue;
            }
            let chunk = jobs.len().div_ceil(FSYNC_PARALLEL_MAX);
            std::thread::scope(|s| {
                for part in jobs.chunks(chunk) {
                    s.spawn(move || {
                        for (p, job) in part {
                            let result = job.run();
                            p.finish_flush(job, result);
                        }
                    });
                }
            });
            after_round();
        }
    }
}
