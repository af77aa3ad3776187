//! Pacing for the whole run: one rate limiter shared by every worker, and the
//! throttle gate that holds every worker back while Graph's window is open.

use std::sync::Mutex;
use std::time::Duration;

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
/// How far under the line a 429 showed the pacer settles: close enough to
/// lose little time, far enough that timing jitter does not cross it.
const MARGIN: f64 = 0.98;
/// How long the pacer stays under a line it found before probing above it
/// again, to find a line that moved up.
const HOLD: Duration = Duration::from_secs(5);
/// The cut for a 429 that comes before any rate could be measured.
const EARLY_CUT: f64 = 0.9;
/// The cut for a 429 that comes within `HOLD` of the last one.
const CASCADE_CUT: f64 = 0.7;
/// How far back answers are counted to measure the rate Graph accepted.
const MEASURE: Duration = Duration::from_secs(3);
/// Lateness of a waiter that the schedule forgives.
const LATENESS: Duration = Duration::from_millis(5);
/// Slots of the accepted-rate measurement.
const SLOTS: usize = 30;

/// Decides when the next call may leave. Every call goes through
/// [`Pacer::ready`] immediately before it is sent, and the calls leave one
/// by one on a single schedule, so a change of pace applies at once to
/// every waiting worker.
///
/// The pace adapts. A 429 (once per window: calls already sent at the old
/// pace do not cut it again) sets it just under the rate Graph accepted over
/// the last seconds, which is where the tenant's line is, or cuts it by a
/// tenth when too little was measured. Under a line it found, the pace climbs back to
/// just under that line at once and then stays for a while; above it, it
/// probes slowly at first and faster the longer no 429 comes, so a line
/// that moved up is found again. It never exceeds the ceiling (`--rate`).
/// So a `--rate` set above the tenant's real limit settles just under that
/// limit instead of hammering it.
pub struct Pacer {
    ceiling: f64,
    burst: u32,
    state: Mutex<RateState>,
    /// Waiters take turns, in order: only the first one watches the clock.
    turn: tokio::sync::Mutex<()>,
    gate: ThrottleGate,
}

struct RateState {
    rate: f64,
    schedule: Schedule,
    last_change: Instant,
    /// Answers without a 429 since the pace last changed.
    clean: u64,
    /// The line the last measured 429 showed, in calls a second.
    line: Option<f64>,
    /// When the pace was last cut for a 429.
    last_cut: Option<Instant>,
    /// How much the next probe above the line adds: it doubles while probes
    /// find no 429, so a line that moved up is reached in a few seconds.
    step: f64,
    accepted: Accepted,
}

/// A GCRA schedule: calls leave `interval` apart, `tolerance` ahead of
/// time at most (the burst).
struct Schedule {
    interval: Duration,
    tolerance: Duration,
    /// When the next call is due if no burst is left.
    due: Instant,
}

impl Schedule {
    fn new(rate: f64, burst: u32, now: Instant) -> Schedule {
        let interval = Duration::from_secs_f64(1.0 / rate);
        Schedule {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            due: now,
        }
    }

    /// The earliest moment the next call may leave.
    fn next(&self, now: Instant) -> Instant {
        self.due.checked_sub(self.tolerance).unwrap_or(now).max(now)
    }

    /// Let up to `calls` more leave at once when they are due.
    fn allow_burst(&mut self, calls: u32) {
        self.tolerance = self.interval * calls;
    }

    fn take(&mut self, now: Instant) {
        // A waiter woken a little late (timers tick by the millisecond)
        // must not push every later call back: without this, a run paced at
        // 30/s with no burst left sends 29.
        let late = now.checked_sub(LATENESS).unwrap_or(now);
        self.due = self.due.max(late) + self.interval;
    }

    /// Go on at `rate`, with no burst left: after a change the run goes at
    /// the new pace, never in a rush.
    fn set_rate(&mut self, rate: f64, now: Instant) {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let last = self.due.checked_sub(self.interval).unwrap_or(now);
        self.due = (last + interval).max(now);
        self.interval = interval;
        self.tolerance = Duration::ZERO;
    }
}

/// Answers without a 429, counted in slots of `MEASURE / SLOTS`.
struct Accepted {
    /// The first answer: before it, nothing can be measured (a slow Graph
    /// answers seconds after the first calls left).
    since: Option<Instant>,
    counts: [u32; SLOTS],
    /// The slot of the newest count, counted from `since`.
    newest: u64,
}

impl Accepted {
    fn new() -> Accepted {
        Accepted {
            since: None,
            counts: [0; SLOTS],
            newest: 0,
        }
    }

    fn slot_of(&self, now: Instant) -> u64 {
        let width = MEASURE.as_secs_f64() / SLOTS as f64;
        let since = self.since.unwrap_or(now);
        (now.saturating_duration_since(since).as_secs_f64() / width) as u64
    }

    fn advance(&mut self, now: Instant) {
        let slot = self.slot_of(now);
        let stale = slot.saturating_sub(self.newest).min(SLOTS as u64);
        for i in 1..=stale {
            self.counts[((self.newest + i) % SLOTS as u64) as usize] = 0;
        }
        self.newest = self.newest.max(slot);
    }

    fn count(&mut self, now: Instant) {
        self.since.get_or_insert(now);
        self.advance(now);
        self.counts[(self.newest % SLOTS as u64) as usize] += 1;
    }

    /// Calls a second accepted lately, once at least a second was seen.
    fn rate(&mut self, now: Instant) -> Option<f64> {
        self.advance(now);
        let seen = now.saturating_duration_since(self.since?).min(MEASURE);
        if seen < Duration::from_secs(1) {
            return None;
        }
        if seen < MEASURE {
            let total: u32 = self.counts.iter().sum();
            return Some(f64::from(total) / seen.as_secs_f64());
        }
        // The newest slot is still filling: count the full ones only.
        let current = (self.newest % SLOTS as u64) as usize;
        let total: u32 = self.counts.iter().sum::<u32>() - self.counts[current];
        let width = MEASURE.as_secs_f64() / SLOTS as f64;
        Some(f64::from(total) / (width * (SLOTS - 1) as f64))
    }
}

impl Pacer {
    /// A pacer that lets at most `rate` calls a second through, starting
    /// with a burst of `burst`.
    pub fn new(rate: f64, burst: u32) -> Pacer {
        let now = Instant::now();
        Pacer {
            ceiling: rate,
            burst,
            state: Mutex::new(RateState {
                rate,
                schedule: Schedule::new(rate, burst, now),
                last_change: now,
                clean: 0,
                line: None,
                last_cut: None,
                step: rate / 20.0,
                accepted: Accepted::new(),
            }),
            turn: tokio::sync::Mutex::new(()),
            gate: ThrottleGate::default(),
        }
    }

    /// Wait until a call may be sent: the gate is open and the schedule has
    /// a slot for it.
    pub async fn ready(&self) {
        let _turn = self.turn.lock().await;
        loop {
            self.gate.wait_open().await;
            let now = Instant::now();
            let at = {
                let mut state = self.state.lock().expect("pacer lock");
                let at = state.schedule.next(now);
                if at <= now {
                    state.schedule.take(now);
                    return;
                }
                at
            };
            // Woken early or late, the schedule and the gate are asked
            // again: the pace may have changed, a window may have opened.
            tokio::time::sleep_until(at).await;
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
    /// the pace was already cut after that call left, cut it.
    pub fn throttled(&self, sent_at: Instant, wait: Duration) {
        self.hold_for(wait);
        let now = Instant::now();
        let mut state = self.state.lock().expect("pacer lock");
        if sent_at < state.last_change {
            return;
        }
        let floor = FLOOR_RATE.min(self.ceiling);
        // A 429 soon after the last cut means the line moved down: the rate
        // measured over the last seconds is stale, so cut harder as well.
        let calm = state
            .last_cut
            .is_none_or(|at| now.saturating_duration_since(at) >= HOLD);
        let rate = match state.accepted.rate(now) {
            Some(accepted) => {
                state.line = Some(accepted.max(floor));
                let cut = if calm { MARGIN } else { CASCADE_CUT };
                (accepted * MARGIN).min(state.rate * cut)
            }
            // Too early to measure: in the first second a 429 is most
            // often the burst's edge, a server whose bucket started at its
            // first arrival, a little after ours.
            None => state.rate * EARLY_CUT,
        };
        let rate = rate.max(floor);
        tracing::info!("throttled: pacing down to {rate:.1} calls/s");
        state.last_cut = Some(now);
        state.step = self.ceiling / 20.0;
        state.set_rate(rate, now);
        // Graph's budget goes on filling while it holds the run back: after
        // a window that ends a calm spell (a probe just over the line), what
        // it refilled at the new pace may go at once when it ends, so that
        // a probe costs little time. Not after a cascade of 429s, when the
        // line has just moved and the budget is not known.
        if calm {
            let credit = (wait.as_secs_f64() * rate).min(f64::from(self.burst));
            state.schedule.allow_burst(credit as u32);
        }
    }

    /// A call was answered without throttling.
    pub fn answered(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("pacer lock");
        state.accepted.count(now);
        if state.rate >= self.ceiling {
            return;
        }
        state.clean += 1;
        if (state.clean as f64) < state.rate {
            return;
        }
        let ceiling = self.ceiling;
        let rate = state.probe(ceiling, now);
        state.set_rate(rate, now);
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
    fn set_rate(&mut self, rate: f64, now: Instant) {
        self.schedule.set_rate(rate, now);
        self.rate = rate;
        self.last_change = now;
        self.clean = 0;
    }

    /// The pace after a second's worth of clean answers.
    fn probe(&mut self, ceiling: f64, now: Instant) -> f64 {
        let fast = self.rate + ceiling / 20.0;
        let (Some(line), Some(at)) = (self.line, self.last_cut) else {
            return fast.min(ceiling);
        };
        let under = line * MARGIN;
        if self.rate < under {
            return fast.min(under).min(ceiling);
        }
        if now.saturating_duration_since(at) < HOLD {
            return self.rate;
        }
        // Above the line: a twentieth of the ceiling at first, twice as
        // much after every second that brought no 429.
        let step = self.step;
        self.step = (self.step * 2.0).min(ceiling / 2.0);
        (self.rate + step).min(ceiling)
    }
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

    /// Total time the gate has been closed so far (not what a window still
    /// open announces beyond now).
    pub fn held(&self) -> Duration {
        let state = self.state.lock().expect("gate lock");
        let ahead = state.until.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        });
        state.held.saturating_sub(ahead)
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
        assert_eq!(gate.held(), Duration::ZERO, "nothing was waited yet");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(gate.held(), Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(30)).await;
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
        assert_eq!(
            gate.held(),
            Duration::from_secs(4),
            "a run stopped now waited 4 s"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
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
    fn an_early_429_cuts_the_rate_once_per_window_and_clean_answers_climb_back() {
        let pacer = Pacer::new(40.0, 40);
        let sent = Instant::now();
        pacer.throttled(sent, Duration::ZERO);
        assert_eq!(pacer.rate(), 36.0);
        // Calls that left before the cut do not cut again.
        pacer.throttled(sent, Duration::ZERO);
        assert_eq!(pacer.rate(), 36.0);
        pacer.throttled(Instant::now(), Duration::ZERO);
        assert!((pacer.rate() - 32.4).abs() < 1e-9);

        for _ in 0..33 {
            pacer.answered();
        }
        assert!((pacer.rate() - 34.4).abs() < 1e-9, "{}", pacer.rate());
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
    async fn calls_leave_one_by_one_at_the_pace_after_the_burst() {
        let pacer = Pacer::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            pacer.ready().await;
        }
        assert_eq!(Instant::now(), start, "the burst leaves at once");
        for _ in 0..10 {
            pacer.ready().await;
        }
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    // Replacing a rate limiter on every change of pace left the workers
    // already queued on the old one: two schedules ran at once, and a run
    // throttled down to 5 calls/s sent 30.
    // (Here the cut is from 10 to 9 calls/s: every gap after it is 1/9 s.)
    #[tokio::test(start_paused = true)]
    async fn a_cut_applies_to_workers_already_waiting() {
        let pacer = std::sync::Arc::new(Pacer::new(10.0, 1));
        let start = Instant::now();
        let waiters: Vec<_> = (0..6)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.ready().await;
                    Instant::now()
                })
            })
            .collect();
        tokio::task::yield_now().await;
        pacer.throttled(Instant::now(), Duration::ZERO);
        assert_eq!(pacer.rate(), 9.0);
        let mut sent = Vec::new();
        for waiter in waiters {
            sent.push(waiter.await.unwrap());
        }
        sent.sort();
        assert_eq!(sent[0], start);
        for pair in sent.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(111), "{sent:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_after_measured_traffic_settles_just_under_what_graph_accepted() {
        let pacer = Pacer::new(90.0, 30);
        for _ in 0..60 {
            tokio::time::advance(Duration::from_millis(50)).await;
            pacer.answered();
        }
        // 20 answers a second were accepted; the line is there.
        pacer.throttled(Instant::now(), Duration::from_secs(1));
        let settled = pacer.rate();
        assert!((settled - 20.0 * MARGIN).abs() < 0.4, "{settled}");

        // Under the line it stays for a while, then probes above it.
        for _ in 0..60 {
            tokio::time::advance(Duration::from_millis(50)).await;
            pacer.answered();
        }
        assert_eq!(pacer.rate(), settled, "held under the line");
        for _ in 0..60 {
            tokio::time::advance(Duration::from_millis(50)).await;
            pacer.answered();
        }
        let probed = pacer.rate();
        assert!(probed > settled && probed < 30.0, "{probed}");
        for _ in 0..4000 {
            tokio::time::advance(Duration::from_millis(10)).await;
            pacer.answered();
        }
        assert_eq!(pacer.rate(), 90.0, "a line that moved away is left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_waiter_does_not_slow_every_later_call() {
        let pacer = Pacer::new(10.0, 1);
        let start = Instant::now();
        for _ in 0..10 {
            pacer.ready().await;
            // Each caller is a little late for its slot.
            tokio::time::advance(Duration::from_millis(3)).await;
        }
        pacer.ready().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(1), "not 1.03 s");
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_gate_lets_calls_through_at_once() {
        let pacer = Pacer::new(1000.0, 10);
        let start = Instant::now();
        pacer.ready().await;
        assert_eq!(Instant::now(), start);
    }
}
