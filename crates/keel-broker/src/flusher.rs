//! Group commit: one thread fsyncs every partition with unflushed appends, in
//! parallel, and then releases every producer waiting on any of them. Producers
//! that arrive while an fsync runs share the next one, so the fsync rate stays
//! near the disk's (~3 ms each here) however many producers there are.

use std::sync::{Arc, Condvar, Mutex};

use keel_storage::FlushJob;

use crate::broker::Partition;

/// At most this many fsyncs run at once in a round.
const FSYNC_PARALLEL_MAX: usize = 4;

#[derive(Default)]
struct Queue {
    pending: Vec<Arc<Partition>>,
    stop: bool,
    /// Tests hold flushes back to see what waits for them.
    #[cfg(test)]
    held: bool,
}

impl Queue {
    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.held
    }
    #[cfg(not(test))]
    fn is_held(&self) -> bool {
        false
    }
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

    /// Holds flushes back (`true`) or lets them run again (tests only).
    #[cfg(test)]
    pub fn hold(&self, on: bool) {
        self.queue.lock().expect("flusher queue lock").held = on;
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.queue.lock().expect("flusher queue lock").stop = true;
        self.wake.notify_one();
    }

    /// The flusher thread's loop; returns after `stop` once the queue is drained.
    /// `after_round` runs once per round (the broker wakes fetchers there).
    ///
    /// A round's fsyncs run in parallel on a few long-lived helper threads (ext4
    /// folds concurrent fdatasyncs into one journal commit); spawning threads per
    /// round cost several percent of a core at ~1000 rounds a second.
    pub fn run(&self, after_round: impl Fn()) {
        type Job = (Arc<Partition>, FlushJob);
        let (job_tx, job_rx) = std::sync::mpsc::channel::<Job>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let helpers: Vec<_> = (1..FSYNC_PARALLEL_MAX)
            .map(|i| {
                let (rx, done) = (job_rx.clone(), done_tx.clone());
                std::thread::Builder::new()
                    .name(format!("keel-fsync-{i}"))
                    .spawn(move || loop {
                        // Hold the receiver's lock only to take a job, not to run it.
                        let next = rx.lock().expect("fsync job queue lock").recv();
                        let Ok((p, job)) = next else { return };
                        let result = timed_run(&job);
                        p.finish_flush(&job, result);
                        if done.send(()).is_err() {
                            return;
                        }
                    })
                    .expect("spawn fsync helper thread")
            })
            .collect();
        loop {
            let batch = {
                let mut q = self.queue.lock().expect("flusher queue lock");
                while (q.pending.is_empty() || q.is_held()) && !q.stop {
                    q = self.wake.wait(q).expect("flusher queue lock");
                }
                if q.pending.is_empty() && q.stop {
                    break;
                }
                std::mem::take(&mut q.pending)
            };
            let mut jobs: Vec<Job> = batch
                .into_iter()
                .filter_map(|p| p.take_flush_job().map(|j| (p, j)))
                .collect();
            if jobs.is_empty() {
                continue;
            }
            // This thread takes one job itself; helpers take the rest.
            let (p, job) = jobs.pop().expect("not empty");
            let helped = jobs.len();
            for j in jobs {
                job_tx
                    .send(j)
                    .expect("fsync helpers outlive the flusher loop");
            }
            let result = timed_run(&job);
            p.finish_flush(&job, result);
            for _ in 0..helped {
                done_rx
                    .recv()
                    .expect("fsync helpers outlive the flusher loop");
            }
            after_round();
        }
        drop(job_tx);
        for h in helpers {
            let _ = h.join();
        }
    }
}

fn timed_run(job: &FlushJob) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    let r = job.run();
    crate::metrics::FSYNC_SECONDS.observe(started.elapsed().as_secs_f64());
    r
}
