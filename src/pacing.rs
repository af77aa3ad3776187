//! Pacing for the whole run: one rate limiter shared by every worker, and the
//! throttle gate that holds every worker back while Graph's window is open.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Graph budgets these requests separately, per app and tenant: each class
/// gets its own pacer and its own throttle window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestClass {
    /// POST installedApps: upgrades and installs.
    InstalledAppsWrite,
    /// GET installedApps.
    InstalledAppsRead,
    /// GET appCatalogs.
    CatalogRead,
}

/// One pacer per request class.
pub struct Budgets {
    write: Pacer,
    installed_read: Pacer,
    catalog_read: Pacer,
}

impl Budgets {
    /// Writes at `write_rate`, each read class at `read_rate`, calls a
    /// second; every class starts with a burst of one second's worth.
    pub fn new(write_rate: f64, write_burst: u32, read_rate: f64) -> Budgets {
        let read_burst = read_rate.ceil() as u32;
        Budgets {
            write: Pacer::new(write_rate, write_burst),
            installed_read: Pacer::new(read_rate, read_burst),
            catalog_read: Pacer::new(read_rate, read_burst),
        }
    }

    pub fn of(&self, class: RequestClass) -> &Pacer {
        match class {
            RequestClass::InstalledAppsWrite => &self.write,
            RequestClass::InstalledAppsRead => &self.installed_read,
            RequestClass::CatalogRead => &self.catalog_read,
        }
    }

    /// Time any class's window held its calls back, added up.
    pub fn held(&self) -> Duration {
        [&self.write, &self.installed_read, &self.catalog_read]
            .iter()
            .map(|pacer| pacer.gate().held())
            .sum()
    }
}

/// The slowest the pacer goes after repeated throttling, in calls a second.
const FLOOR_RATE: f64 = 0.5;

/// Decides when the next call may leave. Every call goes through
/// [`Pacer::ready`] immediately before it is sent.
///
/// The rate adapts: a 429 halves it (once per window: calls already sent at
/// the old rate do not cut it again), and each second's worth of answers
/// without a 429 adds a twentieth of the ceiling back, never above it. So a
/// `--rate` set above the tenant's real limit settles just under that limit
/// instead of hammering it.
pub struct Pacer {
    ceiling: f64,
    state: Mutex<RateState>,
    gate: ThrottleGate,
}

struct RateState {
    rate: f64,
    limiter: Arc<DefaultDirectRateLimiter>,
    last_change: Instant,
    clean: u64,
}

impl Pacer {
    /// A pacer that lets at most `rate` calls a second through, starting
    /// with a burst of `burst`.
    pub fn new(rate: f64, burst: u32) -> Pacer {
        Pacer {
            ceiling: rate,
            state: Mutex::new(RateState {
                rate,
                limiter: Arc::new(limiter(rate, burst)),
                last_change: Instant::now(),
                clean: 0,
            }),
            gate: ThrottleGate::default(),
        }
    }

    /// Wait until a call may be sent: the gate is open and the limiter has a
    /// cell for it.
    pub async fn ready(&self) {
        loop {
            self.gate.wait_open().await;
            let limiter = self.state.lock().expect("pacer lock").limiter.clone();
            limiter.until_ready().await;
            // A window may have opened while we waited for the limiter; the
            // cell is spent, but sending now would land inside the window.
            if self.gate.is_open() {
                return;
            }
        }
    }

    /// Graph asked the whole app to wait `wait`: hold every worker back.
    pub fn hold_for(&self, wait: Duration) {
        if self.gate.is_open() {
            tracing::info!(
                "Graph asked to wait {:.3}s; holding every call until then",
                wait.as_secs_f64()
            );
        }
        self.gate.close_until(Instant::now() + wait);
    }

    /// A call sent at `sent_at` was answered 429: hold the run and, unless
    /// the rate was already cut after that call left, halve it.
    pub fn throttled(&self, sent_at: Instant, wait: Duration) {
        self.hold_for(wait);
        let mut state = self.state.lock().expect("pacer lock");
        if sent_at < state.last_change {
            return;
        }
        let rate = (state.rate / 2.0).max(FLOOR_RATE.min(self.ceiling));
        tracing::info!("throttled: pacing down to {rate:.1} calls/s");
        state.set_rate(rate);
    }

    /// A call was answered without throttling.
    pub fn answered(&self) {
        let mut state = self.state.lock().expect("pacer lock");
        if state.rate >= self.ceiling {
            return;
        }
        state.clean += 1;
        if state.clean as f64 >= state.rate {
            let rate = (state.rate + self.ceiling / 20.0).min(self.ceiling);
            state.set_rate(rate);
        }
    }

    /// The rate the pacer holds now, in calls a second.
    pub fn rate(&self) -> f64 {
        self.state.lock().expect("pacer lock").rate
    }

    pub fn gate(&self) -> &ThrottleGate {
        &self.gate
    }
}

impl RateState {
    fn set_rate(&mut self, rate: f64) {
        // A new limiter without a stored burst: after a change the run goes
        // at the new pace, never in a rush.
        let next = limiter(rate, 1);
        let _ = next.check();
        self.limiter = Arc::new(next);
        self.rate = rate;
        self.last_change = Instant::now();
        self.clean = 0;
    }
}

fn limiter(rate: f64, burst: u32) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate);
    let burst = NonZeroU32::new(burst.max(1)).expect("burst is at least 1");
    let quota = Quota::with_period(period)
        .expect("rate is positive")
        .allow_burst(burst);
    RateLimiter::direct(quota)
}

/// The run-wide throttle window. Closing it never shortens a window already
/// announced; it also keeps the total time the run spent held back.
#[derive(Default)]
pub struct ThrottleGate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    until: Option<Instant>,
    held: Duration,
}

impl ThrottleGate {
    /// Close the gate until `until`, or keep it closed longer if an earlier
    /// window ends later.
    pub fn close_until(&self, until: Instant) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("gate lock");
        let current = state.until.filter(|end| *end > now);
        match current {
            Some(end) if end >= until => {}
            Some(end) => {
                state.held += until - end;
                state.until = Some(until);
            }
            None => {
                state.held += until.saturating_duration_since(now);
                state.until = Some(until);
            }
        }
    }

    /// When the gate opens again, if it is closed now.
    pub fn closed_until(&self) -> Option<Instant> {
        let until = self.state.lock().expect("gate lock").until?;
        (until > Instant::now()).then_some(until)
    }

    pub fn is_open(&self) -> bool {
        self.closed_until().is_none()
    }

    /// Total time the gate has been (or is announced to be) closed.
    pub fn held(&self) -> Duration {
        self.state.lock().expect("gate lock").held
    }

    async fn wait_open(&self) {
        while let Some(until) = self.closed_until() {
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_later_window_extends_and_an_earlier_one_does_not_shorten() {
        let gate = ThrottleGate::default();
        let start = Instant::now();
        gate.close_until(start + Duration::from_secs(5));
        gate.close_until(start + Duration::from_secs(2));
        assert_eq!(gate.closed_until(), Some(start + Duration::from_secs(5)));
        gate.close_until(start + Duration::from_secs(8));
        assert_eq!(gate.closed_until(), Some(start + Duration::from_secs(8)));
        assert_eq!(gate.held(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn held_time_counts_overlapping_windows_once() {
        let gate = ThrottleGate::default();
        gate.close_until(Instant::now() + Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(1)).await;
        gate.close_until(Instant::now() + Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(10)).await;
        gate.close_until(Instant::now() + Duration::from_secs(1));
        assert_eq!(gate.held(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn ready_waits_out_an_open_window() {
        let pacer = Pacer::new(1000.0, 10);
        let start = Instant::now();
        pacer.hold_for(Duration::from_millis(1500));
        pacer.ready().await;
        assert!(Instant::now() >= start + Duration::from_millis(1500));
        assert!(pacer.gate().is_open());
    }

    #[test]
    fn a_429_halves_the_rate_once_per_window_and_clean_answers_climb_back() {
        let pacer = Pacer::new(40.0, 40);
        let sent = Instant::now();
        pacer.throttled(sent, Duration::ZERO);
        assert_eq!(pacer.rate(), 20.0);
        // Calls that left before the cut do not cut again.
        pacer.throttled(sent, Duration::ZERO);
        assert_eq!(pacer.rate(), 20.0);
        pacer.throttled(Instant::now(), Duration::ZERO);
        assert_eq!(pacer.rate(), 10.0);

        for _ in 0..10 {
            pacer.answered();
        }
        assert_eq!(pacer.rate(), 12.0);
        for _ in 0..10_000 {
            pacer.answered();
        }
        assert_eq!(pacer.rate(), 40.0, "never above the ceiling");
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_on_writes_does_not_hold_reads() {
        let budgets = Budgets::new(30.0, 30, 30.0);
        budgets
            .of(RequestClass::InstalledAppsWrite)
            .throttled(Instant::now(), Duration::from_secs(30));
        let start = Instant::now();
        budgets.of(RequestClass::InstalledAppsRead).ready().await;
        budgets.of(RequestClass::CatalogRead).ready().await;
        assert_eq!(Instant::now(), start);
        assert_eq!(budgets.of(RequestClass::InstalledAppsRead).rate(), 30.0);
        assert!(!budgets
            .of(RequestClass::InstalledAppsWrite)
            .gate()
            .is_open());
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let pacer = Pacer::new(2.0, 1);
        for _ in 0..20 {
            pacer.throttled(Instant::now(), Duration::ZERO);
        }
        assert_eq!(pacer.rate(), FLOOR_RATE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_gate_lets_calls_through_at_once() {
        let pacer = Pacer::new(1000.0, 10);
        let start = Instant::now();
        pacer.ready().await;
        assert_eq!(Instant::now(), start);
    }
}
