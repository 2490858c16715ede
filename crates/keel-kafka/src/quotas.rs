//! Client quotas enforced by throttling, as Kafka's `ClientQuotaManager`
//! does (KIP-13, KIP-124, KIP-219):
//! - each (user, client id) is measured against its most specific limit in
//!   the metadata image (the eight levels of Kafka's `DefaultQuotaCallback`,
//!   from `user` and `client-id` both named down to the default client id);
//!   clients sharing a limit set on a default share no measurement: each
//!   user or client id the default covers has its own;
//! - a rate is the sum of the last `window_num` samples of `window` each,
//!   over their span, counted as at least `window_num - 1` windows (Kafka's
//!   `Rate.windowSize`: a new client may send a burst of that many windows'
//!   worth before it is throttled);
//! - when a request takes a rate over its limit, the time until the rate is
//!   back at the limit, `(rate - limit) / limit * span`, is the throttle: the
//!   answer carries it in `throttle_time_ms` and the connection reads no
//!   further request until it has passed (KIP-219's muted channel), so a
//!   client is slowed and never refused.
//!
//! Produce counts its request's bytes once appended; Fetch its answer's
//! records, and an answer that would be throttled goes out empty (Kafka
//! "unrecords" the bytes); every request counts the time its handling took
//! on the connection's task as a percentage of a thread (`request_percentage`).
//! Followers' fetches are replication, never throttled. Without Kafka
//! authentication on the Kafka listener every client is the user
//! `ANONYMOUS`, as Kafka names an unauthenticated principal.
//!
//! The measuring is a pure state machine with time passed in ([`Quotas`]);
//! the server holds the muted connection ([`Throttle`]). A request-time
//! throttle is at most one window long, as Kafka bounds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_meta::quotas::{
    ClientQuota, CLIENT_ID, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE, USER,
};

/// The principal every client has while the Kafka listener authenticates
/// no one (Kafka's `KafkaPrincipal.ANONYMOUS`).
pub const ANONYMOUS: &str = "ANONYMOUS";

/// A measurement with no record for this long is dropped (Kafka's
/// `InactiveSensorExpirationTimeSeconds`).
const IDLE_EXPIRY_MS: u64 = 3_600_000;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Produce,
    Fetch,
    Request,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }
}

/// Kafka's `quota.window.num` and `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub num: u32,
    pub size: Duration,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            num: 11,
            size: Duration::from_secs(1),
        }
    }
}

/// A rate over sampled windows (Kafka's `Rate` over a `SampledStat`).
#[derive(Debug, Clone, Default)]
struct Rate {
    /// (start of the sample in ms, its sum), oldest first.
    samples: std::collections::VecDeque<(u64, f64)>,
    last_ms: u64,
}

impl Rate {
    fn purge(&mut self, w: Windows, now: u64) {
        let span = w.size.as_millis() as u64 * u64::from(w.num);
        while self
            .samples
            .front()
            .is_some_and(|(start, _)| start.saturating_add(span) <= now)
        {
            self.samples.pop_front();
        }
    }

    fn record(&mut self, w: Windows, now: u64, value: f64) {
        self.purge(w, now);
        let size = w.size.as_millis() as u64;
        match self.samples.back_mut() {
            Some((start, sum)) if now < start.saturating_add(size) => *sum += value,
            _ => {
                self.samples.push_back((now, value));
                if self.samples.len() > w.num as usize {
                    self.samples.pop_front();
                }
            }
        }
        self.last_ms = now;
    }

    /// The span the rate is measured over, in ms (Kafka's `windowSize`).
    fn span(&self, w: Windows, now: u64) -> u64 {
        let size = w.size.as_millis().max(1) as u64;
        let mut elapsed = self
            .samples
            .front()
            .map_or(0, |(start, _)| now.saturating_sub(*start));
        let full = elapsed / size;
        let min_full = u64::from(w.num.saturating_sub(1));
        if full < min_full {
            elapsed += (min_full - full) * size;
        }
        elapsed.max(1)
    }

    /// Per second.
    fn value(&mut self, w: Windows, now: u64) -> f64 {
        self.purge(w, now);
        let sum: f64 = self.samples.iter().map(|(_, v)| v).sum();
        sum * 1000.0 / self.span(w, now) as f64
    }
}

/// A limit level: the user part and the client-id part of the entity that
/// set it, each absent, the default, or named.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Absent,
    Default,
    Named(String),
}

/// Whose measurement a request counts in: the parts of the matched limit's
/// entity, with defaults replaced by the client's own names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Sensor {
    kind: Kind,
    user: Option<String>,
    client_id: Option<String>,
}

#[derive(Default)]
struct State {
    /// The image's quotas these limits were built from.
    source: Vec<ClientQuota>,
    limits: HashMap<(Part, Part), HashMap<&'static str, f64>>,
    rates: HashMap<Sensor, Rate>,
    last_sweep_ms: u64,
}

impl State {
    /// Rebuilds the limits when the image's quotas changed.
    fn sync(&mut self, quotas: &[ClientQuota]) {
        if self.source != quotas {
            self.source = quotas.to_vec();
            self.limits = limits(quotas);
        }
    }
}

/// Every client's measurements on this broker against the image's limits.
#[derive(Clone)]
pub struct Quotas {
    windows: Windows,
    state: Arc<Mutex<State>>,
}

impl Quotas {
    pub fn new(windows: Windows) -> Quotas {
        Quotas {
            windows: Windows {
                num: windows.num.max(2),
                size: windows.size.max(Duration::from_millis(1)),
            },
            state: Arc::default(),
        }
    }

    /// Counts `value` for the client and returns how long to throttle it:
    /// zero while its rate stays within its limit, or when it has none.
    /// `quotas` is the image's list; it is cheap to pass when unchanged.
    pub fn record(
        &self,
        quotas: &[ClientQuota],
        kind: Kind,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: u64,
    ) -> Duration {
        if quotas.is_empty() {
            return Duration::ZERO;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.sync(quotas);
        let Some((limit, sensor)) = resolve(&st.limits, kind, user, client_id) else {
            return Duration::ZERO;
        };
        if now_ms.saturating_sub(st.last_sweep_ms) > 60_000 {
            st.last_sweep_ms = now_ms;
            st.rates
                .retain(|_, r| now_ms.saturating_sub(r.last_ms) < IDLE_EXPIRY_MS);
        }
        let w = self.windows;
        let rate = st.rates.entry(sensor).or_default();
        rate.record(w, now_ms, value);
        let observed = rate.value(w, now_ms);
        if observed <= limit {
            return Duration::ZERO;
        }
        let ms = (observed - limit) / limit * rate.span(w, now_ms) as f64;
        let wait = Duration::from_millis(ms.round().clamp(0.0, 1e9) as u64);
        match kind {
            // Kafka's ClientRequestQuotaManager bounds a request-time
            // throttle by one window.
            Kind::Request => wait.min(w.size),
            Kind::Produce | Kind::Fetch => wait,
        }
    }

    /// Takes back a value counted for an answer that went out empty (Kafka's
    /// `unrecordQuotaSensor`, for a throttled fetch).
    pub fn unrecord(
        &self,
        quotas: &[ClientQuota],
        kind: Kind,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: u64,
    ) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.source != quotas {
            return;
        }
        if let Some((_, sensor)) = resolve(&st.limits, kind, user, client_id) {
            if let Some(rate) = st.rates.get_mut(&sensor) {
                rate.record(self.windows, now_ms, -value);
            }
        }
    }

    /// The most bytes one fetch may carry without being throttled for them
    /// alone (Kafka's `getMaxValueInQuotaWindow`), if the client has a limit.
    pub fn fetch_bytes_max(
        &self,
        quotas: &[ClientQuota],
        user: &str,
        client_id: &str,
    ) -> Option<i64> {
        if quotas.is_empty() {
            return None;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.sync(quotas);
        let (limit, _) = resolve(&st.limits, Kind::Fetch, user, client_id)?;
        let window_s = self.windows.size.as_secs_f64() * f64::from(self.windows.num - 1);
        Some((limit * window_s).clamp(1.0, i32::MAX as f64) as i64)
    }
}

fn part(q: &ClientQuota, t: &str) -> Part {
    match q.entity.iter().find(|p| p.entity_type == t) {
        None => Part::Absent,
        Some(p) => p.name.clone().map_or(Part::Default, Part::Named),
    }
}

fn limits(quotas: &[ClientQuota]) -> HashMap<(Part, Part), HashMap<&'static str, f64>> {
    let mut out: HashMap<_, HashMap<_, _>> = HashMap::new();
    for q in quotas {
        let level = (part(q, USER), part(q, CLIENT_ID));
        for kind in [Kind::Produce, Kind::Fetch, Kind::Request] {
            if let Some(v) = q.values.get(kind.key()) {
                out.entry(level.clone()).or_default().insert(kind.key(), *v);
            }
        }
    }
    out
}

/// The most specific limit of `kind` for the client, and the measurement it
/// counts in (Kafka's `DefaultQuotaCallback.quotaMetricTags`).
fn resolve(
    limits: &HashMap<(Part, Part), HashMap<&'static str, f64>>,
    kind: Kind,
    user: &str,
    client_id: &str,
) -> Option<(f64, Sensor)> {
    let u = || Part::Named(user.to_string());
    let c = || Part::Named(client_id.to_string());
    let levels = [
        (u(), c()),
        (u(), Part::Default),
        (u(), Part::Absent),
        (Part::Default, c()),
        (Part::Default, Part::Default),
        (Part::Default, Part::Absent),
        (Part::Absent, c()),
        (Part::Absent, Part::Default),
    ];
    levels.into_iter().find_map(|level| {
        let limit = *limits.get(&level)?.get(kind.key())?;
        let sensor = Sensor {
            kind,
            user: (level.0 != Part::Absent).then(|| user.to_string()),
            client_id: (level.1 != Part::Absent).then(|| client_id.to_string()),
        };
        Some((limit, sensor))
    })
}

/// A connection's mute (KIP-219): until when it reads no further request.
#[derive(Debug)]
pub struct Throttle {
    base: Instant,
    until_ms: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }
}

impl Throttle {
    /// Mutes the connection for `d` from now (or longer, if already muted
    /// past that).
    pub fn hold(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let until = (self.base.elapsed() + d).as_millis() as u64;
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// When the mute ends, if the connection is muted now.
    pub fn until(&self) -> Option<Instant> {
        let ms = self.until_ms.load(Ordering::Relaxed);
        let at = self.base + Duration::from_millis(ms);
        (at > Instant::now()).then_some(at)
    }
}

/// Milliseconds on the process's monotonic clock, for [`Quotas`].
pub fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_meta::quotas::QuotaEntityPart;

    fn quota(parts: &[(&str, Option<&str>)], key: &str, v: f64) -> ClientQuota {
        ClientQuota {
            entity: parts
                .iter()
                .map(|(t, n)| QuotaEntityPart {
                    entity_type: t.to_string(),
                    name: n.map(Into::into),
                })
                .collect(),
            values: [(key.to_string(), v)].into(),
        }
    }

    #[test]
    fn the_most_specific_limit_wins_and_defaults_measure_each_client_alone() {
        let qs = vec![
            quota(&[(CLIENT_ID, None)], PRODUCER_BYTE_RATE, 100.0),
            quota(&[(CLIENT_ID, Some("big"))], PRODUCER_BYTE_RATE, 1e9),
            quota(&[(USER, Some("ann"))], PRODUCER_BYTE_RATE, 50.0),
        ];
        let l = limits(&qs);
        let (limit, s) = resolve(&l, Kind::Produce, ANONYMOUS, "big").unwrap();
        assert_eq!(limit, 1e9);
        assert_eq!(s.client_id.as_deref(), Some("big"));
        let (limit, s) = resolve(&l, Kind::Produce, ANONYMOUS, "small").unwrap();
        assert_eq!(limit, 100.0);
        assert_eq!((s.user, s.client_id.as_deref()), (None, Some("small")));
        // A user's own limit comes before any client-id limit.
        assert_eq!(resolve(&l, Kind::Produce, "ann", "big").unwrap().0, 50.0);
        assert!(resolve(&l, Kind::Fetch, ANONYMOUS, "big").is_none());

        // Two clients under the default each get the whole limit.
        let q = Quotas::new(Windows::default());
        assert_eq!(
            q.record(&qs, Kind::Produce, ANONYMOUS, "a", 900.0, 0),
            Duration::ZERO
        );
        assert_eq!(
            q.record(&qs, Kind::Produce, ANONYMOUS, "b", 900.0, 0),
            Duration::ZERO
        );
        assert!(q.record(&qs, Kind::Produce, ANONYMOUS, "a", 200.0, 10) > Duration::ZERO);
    }

    #[test]
    fn a_client_over_its_limit_is_throttled_until_its_rate_is_back() {
        let qs = vec![quota(&[(CLIENT_ID, Some("p"))], PRODUCER_BYTE_RATE, 1000.0)];
        let w = Windows {
            num: 11,
            size: Duration::from_secs(1),
        };
        let q = Quotas::new(w);
        // A new client may send ten windows' worth at once (the span counts
        // as at least num - 1 windows).
        assert_eq!(
            q.record(&qs, Kind::Produce, ANONYMOUS, "p", 10_000.0, 0),
            Duration::ZERO
        );
        // 5 000 more: 15 000 over 10 s is 1 500/s, half again the limit, so
        // five seconds' wait brings it back: 15 000 / 15 s.
        let t = q.record(&qs, Kind::Produce, ANONYMOUS, "p", 5_000.0, 0);
        assert_eq!(t, Duration::from_secs(5));
        // A client that keeps to the wait sends at the limit: simulate one
        // that sends 1 000 bytes and waits what it is told, measured from
        // 15 s (the burst has left the windows) to 75 s.
        let (mut now, mut sent) = (5_000u64, 0.0);
        while now < 75_000 {
            let t = q.record(&qs, Kind::Produce, ANONYMOUS, "p", 1_000.0, now);
            if now >= 15_000 {
                sent += 1_000.0;
            }
            now += t.as_millis() as u64 + 1;
        }
        let rate = sent / 60.0;
        assert!(
            (900.0..=1_100.0).contains(&rate),
            "{rate} bytes/s against 1 000"
        );
        // Taking back what an empty answer did not send.
        let q = Quotas::new(w);
        let fq = vec![quota(&[(CLIENT_ID, None)], CONSUMER_BYTE_RATE, 1000.0)];
        assert_eq!(q.fetch_bytes_max(&fq, ANONYMOUS, "c"), Some(10_000));
        let t = q.record(&fq, Kind::Fetch, ANONYMOUS, "c", 20_000.0, 0);
        assert!(t > Duration::ZERO);
        q.unrecord(&fq, Kind::Fetch, ANONYMOUS, "c", 20_000.0, 0);
        assert_eq!(
            q.record(&fq, Kind::Fetch, ANONYMOUS, "c", 5_000.0, 1),
            Duration::ZERO
        );
    }

    #[test]
    fn no_limit_no_measurement() {
        let q = Quotas::new(Windows::default());
        assert_eq!(
            q.record(&[], Kind::Request, ANONYMOUS, "x", 1e12, 0),
            Duration::ZERO
        );
        assert!(q.state.lock().unwrap().rates.is_empty());
        let other = vec![quota(&[(CLIENT_ID, Some("y"))], REQUEST_PERCENTAGE, 1.0)];
        assert_eq!(
            q.record(&other, Kind::Request, ANONYMOUS, "x", 1e12, 0),
            Duration::ZERO
        );
        assert!(q.state.lock().unwrap().rates.is_empty());
    }

    #[test]
    fn a_mute_holds_until_its_end() {
        let t = Throttle::default();
        assert!(t.until().is_none());
        t.hold(Duration::from_secs(60));
        t.hold(Duration::from_millis(1));
        let until = t.until().expect("muted");
        assert!(until > Instant::now() + Duration::from_secs(59));
    }
}
