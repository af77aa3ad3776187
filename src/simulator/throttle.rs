//! The tenant's throttles, one per request class Graph budgets separately: for each, a token
//! bucket shared by all callers and the `Retry-After` window it announced and now enforces.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::RetryAfterForm;

/// The cycle `RetryAfterForm::Mixed` walks through, one step per 429.
const MIXED: [RetryAfterForm; 3] = [
    RetryAfterForm::Seconds,
    RetryAfterForm::Decimal,
    RetryAfterForm::HttpDate,
];

/// The longest wait ever announced: far beyond any window Graph was seen to open, and short
/// enough that `Instant` arithmetic cannot overflow.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// Floating-point slack, so a client that waited exactly as told is never refused for 1e-16 of
/// a token.
const EPSILON: f64 = 1e-9;

/// The request classes Graph budgets separately, each with its own bucket and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestClass {
    /// POST installedApps: upgrades and installs (`SimConfig::rate`, `burst`).
    InstalledAppsWrite,
    /// GET installedApps, one installation or a list (`SimConfig::read_rate`, `read_burst`).
    InstalledAppsRead,
    /// GET appCatalogs (`SimConfig::read_rate`, `read_burst`, in a bucket of its own).
    CatalogRead,
}

impl RequestClass {
    pub const ALL: [RequestClass; 3] = [
        RequestClass::InstalledAppsWrite,
        RequestClass::InstalledAppsRead,
        RequestClass::CatalogRead,
    ];

    /// The key in `Books::throttled_by_class`.
    pub fn name(self) -> &'static str {
        match self {
            RequestClass::InstalledAppsWrite => "installed_apps_write",
            RequestClass::InstalledAppsRead => "installed_apps_read",
            RequestClass::CatalogRead => "catalog_read",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One throttle per request class.
pub(crate) struct Throttles {
    classes: [Throttle; 3],
}

impl Throttles {
    pub(crate) fn new(config: &super::SimConfig, now: Instant) -> Self {
        let read = || Throttle::with_limit(config, config.read_rate, config.read_burst, now);
        Throttles {
            classes: [Throttle::new(config, now), read(), read()],
        }
    }

    /// Decides one call of a class; the other classes' buckets and windows are not touched.
    pub(crate) fn check(&mut self, class: RequestClass, now: Instant, wall: SystemTime) -> Verdict {
        self.classes[class.index()].check(now, wall)
    }

    pub(crate) fn set_rate(&mut self, class: RequestClass, rate: Option<f64>, now: Instant) {
        self.classes[class.index()].set_rate(rate, now);
    }

    pub(crate) fn retry_after_for_503(
        &self,
        class: RequestClass,
        wall: SystemTime,
    ) -> Option<String> {
        self.classes[class.index()].retry_after_for_503(wall)
    }
}

/// What the throttle decided for one call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A token was taken; the call goes on.
    Pass,
    /// Answer 429 now.
    Throttled {
        /// The `Retry-After` header value, if this form sends one.
        retry_after: Option<String>,
        /// The call arrived inside a window its client had already been told about.
        in_window: bool,
    },
}

/// One 429 that carried a `Retry-After`: when it was answered and the end it announced.
#[derive(Debug)]
struct Announcement {
    at: Instant,
    end: Instant,
}

/// The bucket and the window of one request class.
pub(crate) struct Throttle {
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    form: RetryAfterForm,
    mixed_turn: usize,
    min_retry_after: Duration,
    grace: Duration,
    /// The open window, oldest first. Each announcement ends no earlier than the one before
    /// it, so the front is always the first the client heard of that still covers "now".
    window: VecDeque<Announcement>,
    /// Where the window really ends, before rounding for the header. Prolonging builds on
    /// this, so that rounding each answer up to a whole second does not compound.
    unrounded_end: Instant,
}

impl Throttle {
    /// The write class's throttle: `SimConfig::rate` and `burst`.
    pub(crate) fn new(config: &super::SimConfig, now: Instant) -> Self {
        Throttle::with_limit(config, config.rate, config.burst, now)
    }

    /// A throttle with its own line, and the `Retry-After` habits of the config.
    fn with_limit(config: &super::SimConfig, rate: Option<f64>, burst: u32, now: Instant) -> Self {
        Throttle {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled_at: now,
            form: config.retry_after,
            mixed_turn: 0,
            min_retry_after: config.min_retry_after,
            grace: config.announce_grace,
            window: VecDeque::new(),
            unrounded_end: now,
        }
    }

    /// Decides one call arriving at `now` (`wall` is the same moment on the wall clock).
    pub(crate) fn check(&mut self, now: Instant, wall: SystemTime) -> Verdict {
        let Some(rate) = self.rate else {
            return Verdict::Pass;
        };
        while self.window.front().is_some_and(|a| a.end <= now) {
            self.window.pop_front();
        }

        // Graph counts calls sent while throttled: each one pushes the window further out.
        if !self.window.is_empty() {
            let in_window = self
                .window
                .front()
                .is_some_and(|first| now > first.at + self.grace);
            let wanted =
                (self.unrounded_end.max(now) + secs(1.0 / rate)).saturating_duration_since(now);
            let retry_after = self.announce(now, wall, wanted);
            return Verdict::Throttled {
                retry_after,
                in_window,
            };
        }

        self.refill(now, rate);
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Verdict::Pass;
        }
        let wanted = secs((1.0 - self.tokens) / rate);
        let retry_after = self.announce(now, wall, wanted);
        Verdict::Throttled {
            retry_after,
            in_window: false,
        }
    }

    /// Changes the refill rate; `None` stops throttling and forgets any open window.
    pub(crate) fn set_rate(&mut self, rate: Option<f64>, now: Instant) {
        match self.rate {
            Some(old) => self.refill(now, old),
            None => {
                self.tokens = self.burst;
                self.refilled_at = now;
            }
        }
        if rate.is_none() {
            self.window.clear();
        }
        self.rate = rate;
    }

    /// The `Retry-After` a 503 carries: one second in the current form, opening no window.
    pub(crate) fn retry_after_for_503(&self, wall: SystemTime) -> Option<String> {
        render(self.current_form(), Duration::from_secs(1), wall).map(|(value, _)| value)
    }

    /// The form the next 429 uses; `Mixed` resolves to its current step.
    fn current_form(&self) -> RetryAfterForm {
        match self.form {
            RetryAfterForm::Mixed => MIXED[self.mixed_turn % MIXED.len()],
            form => form,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(self.burst);
        self.refilled_at = now;
    }

    /// Renders the wait in this 429's form and, when a header goes out, records exactly the
    /// end it announced, so the server never refuses a client that waited as told.
    fn announce(&mut self, now: Instant, wall: SystemTime, wanted: Duration) -> Option<String> {
        let form = self.current_form();
        self.mixed_turn += 1;
        let wait = wanted.max(self.min_retry_after).min(MAX_WAIT);
        let (value, announced) = render(form, wait, wall)?;
        self.unrounded_end = self.unrounded_end.max(now + wait);
        if self.window.is_empty() {
            tracing::debug!(retry_after = %value, "simulator opened a throttle window");
        }
        let end = now + announced;
        self.window.push_back(Announcement { at: now, end });
        Some(value)
    }
}

/// The header value for a wait in one form, and the wait it really announces (rounded up).
fn render(form: RetryAfterForm, wait: Duration, wall: SystemTime) -> Option<(String, Duration)> {
    match form {
        RetryAfterForm::Seconds => {
            let whole = wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64;
            Some((whole.to_string(), Duration::from_secs(whole)))
        }
        RetryAfterForm::Decimal => {
            let millis = wait.as_nanos().div_ceil(1_000_000).max(1) as u64;
            let value = format!("{}.{:03}", millis / 1000, millis % 1000);
            Some((value, Duration::from_millis(millis)))
        }
        RetryAfterForm::HttpDate => {
            let end = ceil_to_second(wall + wait);
            let announced = end.duration_since(wall).unwrap_or(wait);
            Some((httpdate::fmt_http_date(end), announced))
        }
        RetryAfterForm::Absent | RetryAfterForm::Mixed => None,
    }
}

fn ceil_to_second(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    UNIX_EPOCH + Duration::from_secs(whole)
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s)
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::SimConfig;

    fn throttle(rate: f64, burst: u32, form: RetryAfterForm) -> (Throttle, Instant) {
        let config = SimConfig {
            rate: Some(rate),
            burst,
            retry_after: form,
            ..SimConfig::default()
        };
        let now = Instant::now();
        (Throttle::new(&config, now), now)
    }

    fn header(verdict: Verdict) -> String {
        match verdict {
            Verdict::Throttled {
                retry_after: Some(value),
                ..
            } => value,
            other => panic!("expected a 429 with Retry-After, got {other:?}"),
        }
    }

    // A wall clock on a whole second plus a quarter, so rounding is visible.
    fn wall() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)
    }

    #[test]
    fn the_burst_passes_then_the_next_call_is_told_the_refill_time() {
        let (mut t, now) = throttle(4.0, 2, RetryAfterForm::Decimal);
        assert_eq!(t.check(now, wall()), Verdict::Pass);
        assert_eq!(t.check(now, wall()), Verdict::Pass);
        assert_eq!(header(t.check(now, wall())), "0.250");
    }

    #[test]
    fn decimal_and_seconds_round_up() {
        let (mut t, now) = throttle(3.0, 1, RetryAfterForm::Decimal);
        t.check(now, wall());
        assert_eq!(header(t.check(now, wall())), "0.334");

        let (mut t, now) = throttle(3.0, 1, RetryAfterForm::Seconds);
        t.check(now, wall());
        assert_eq!(header(t.check(now, wall())), "1");
    }

    #[test]
    fn http_date_rounds_the_end_up_to_a_whole_second() {
        let (mut t, now) = throttle(4.0, 1, RetryAfterForm::HttpDate);
        t.check(now, wall());
        let value = header(t.check(now, wall()));
        let end = httpdate::parse_http_date(&value).unwrap();
        assert_eq!(end, UNIX_EPOCH + Duration::from_secs(1_700_000_001));
    }

    #[test]
    fn the_min_retry_after_is_a_floor() {
        let config = SimConfig {
            rate: Some(100.0),
            burst: 1,
            retry_after: RetryAfterForm::Decimal,
            min_retry_after: Duration::from_secs(2),
            ..SimConfig::default()
        };
        let now = Instant::now();
        let mut t = Throttle::new(&config, now);
        t.check(now, wall());
        assert_eq!(header(t.check(now, wall())), "2.000");
    }

    #[test]
    fn absent_sends_no_header_and_opens_no_window() {
        let (mut t, now) = throttle(1.0, 1, RetryAfterForm::Absent);
        t.check(now, wall());
        assert_eq!(
            t.check(now, wall()),
            Verdict::Throttled {
                retry_after: None,
                in_window: false
            }
        );
        assert!(t.window.is_empty());
        assert_eq!(t.check(now + Duration::from_secs(1), wall()), Verdict::Pass);
    }

    #[test]
    fn mixed_cycles_through_the_forms() {
        let (mut t, now) = throttle(1.0, 1, RetryAfterForm::Mixed);
        t.check(now, wall());
        let values: Vec<String> = (0..4).map(|_| header(t.check(now, wall()))).collect();
        assert!(values[0].parse::<u64>().is_ok(), "{values:?}");
        assert!(values[1].contains('.'), "{values:?}");
        assert!(httpdate::parse_http_date(&values[2]).is_ok(), "{values:?}");
        assert!(values[3].parse::<u64>().is_ok(), "{values:?}");
    }

    #[test]
    fn calls_inside_the_window_prolong_it_and_count_after_the_grace() {
        let (mut t, now) = throttle(2.0, 1, RetryAfterForm::Decimal);
        t.check(now, wall());
        assert_eq!(header(t.check(now, wall())), "0.500");

        // Already on the wire when the 429 went out: refused, but not the client's fault.
        let soon = now + Duration::from_millis(10);
        let verdict = t.check(soon, wall());
        assert_eq!(
            verdict,
            Verdict::Throttled {
                retry_after: Some("0.990".into()),
                in_window: false
            }
        );

        // Well after the client heard: refused, counted, and the window grows by 1/rate again.
        let later = now + Duration::from_millis(200);
        let verdict = t.check(later, wall());
        assert_eq!(
            verdict,
            Verdict::Throttled {
                retry_after: Some("1.300".into()),
                in_window: true
            }
        );

        // Waiting out the last announced end is enough.
        assert_eq!(
            t.check(later + Duration::from_millis(1300), wall()),
            Verdict::Pass
        );
    }

    #[test]
    fn a_hot_loop_inside_the_window_is_counted_even_though_each_call_extends_it() {
        let (mut t, now) = throttle(10.0, 1, RetryAfterForm::Decimal);
        t.check(now, wall());
        t.check(now, wall());
        let counted = (1..=10)
            .map(|i| t.check(now + Duration::from_millis(20 * i), wall()))
            .filter(|v| {
                matches!(
                    v,
                    Verdict::Throttled {
                        in_window: true,
                        ..
                    }
                )
            })
            .count();
        // Calls at 20 and 40 ms are inside the grace of the first 429; the rest are not.
        assert_eq!(counted, 8);
    }

    #[test]
    fn set_rate_none_lifts_the_throttle() {
        let (mut t, now) = throttle(1.0, 1, RetryAfterForm::Seconds);
        t.check(now, wall());
        assert!(matches!(t.check(now, wall()), Verdict::Throttled { .. }));
        t.set_rate(None, now);
        assert_eq!(t.check(now, wall()), Verdict::Pass);
        t.set_rate(Some(1.0), now);
        assert_eq!(t.check(now, wall()), Verdict::Pass);
        assert!(matches!(t.check(now, wall()), Verdict::Throttled { .. }));
    }

    #[test]
    fn a_503_retry_after_is_one_second_in_the_current_form() {
        let (t, _) = throttle(1.0, 1, RetryAfterForm::Decimal);
        assert_eq!(t.retry_after_for_503(wall()).as_deref(), Some("1.000"));
        let (t, _) = throttle(1.0, 1, RetryAfterForm::Absent);
        assert_eq!(t.retry_after_for_503(wall()), None);
    }

    #[test]
    fn each_class_has_its_own_bucket() {
        let config = SimConfig {
            rate: Some(1.0),
            burst: 1,
            read_rate: Some(1.0),
            read_burst: 2,
            retry_after: RetryAfterForm::Decimal,
            ..SimConfig::default()
        };
        let now = Instant::now();
        let mut t = Throttles::new(&config, now);
        let mut check = |class| t.check(class, now, wall()) == Verdict::Pass;

        assert!(check(RequestClass::InstalledAppsWrite));
        assert!(!check(RequestClass::InstalledAppsWrite));
        for class in [RequestClass::InstalledAppsRead, RequestClass::CatalogRead] {
            assert!(check(class) && check(class), "{class:?}");
            assert!(!check(class), "{class:?}");
        }
    }

    #[test]
    fn class_names_are_distinct() {
        let names: std::collections::HashSet<&str> =
            RequestClass::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), 3);
    }

    /// The same rules seen from a client over loopback HTTP.
    mod over_http {
        use super::*;
        use crate::simulator::server::tests::{
            apps_url, graph_get, graph_post, installation_url, upgrade_url,
        };
        use crate::simulator::Simulator;

        async fn start(config: SimConfig) -> (Simulator, String) {
            let sim = Simulator::start(config).await.unwrap();
            let token = sim.mint_token(Duration::from_secs(60));
            (sim, token)
        }

        fn config(rate: f64, form: RetryAfterForm) -> SimConfig {
            SimConfig {
                rate: Some(rate),
                burst: 1,
                retry_after: form,
                ..SimConfig::default()
            }
        }

        async fn call(sim: &Simulator, token: &str) -> (u16, Option<String>) {
            let response = graph_post(&upgrade_url(sim, "a@x", "i"), token).await;
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), retry_after)
        }

        /// The first 429 after the burst was spent.
        struct Refused {
            retry_after: Option<String>,
            /// From sending the last call that passed to hearing the 429: at least the time
            /// that refilled the bucket in between, as the server saw it.
            since_pass: f64,
            /// When the refused call was sent.
            sent: Instant,
        }

        /// Spends the one-call burst and returns the first 429. Calls repeat until one is
        /// refused, so a slow machine that lets a token refill in between is no failure.
        async fn throttled(sim: &Simulator, token: &str) -> Refused {
            let mut last_pass = Instant::now();
            for _ in 0..20 {
                let sent = Instant::now();
                match call(sim, token).await {
                    (204, _) => last_pass = sent,
                    (429, retry_after) => {
                        let since_pass = last_pass.elapsed().as_secs_f64();
                        return Refused {
                            retry_after,
                            since_pass,
                            sent,
                        };
                    }
                    (status, _) => panic!("unexpected status {status}"),
                }
            }
            panic!("twenty calls and not one throttled");
        }

        fn seconds(value: Option<String>) -> f64 {
            value.expect("a Retry-After header").parse().unwrap()
        }

        #[tokio::test]
        async fn decimal_is_the_refill_time_rounded_up_and_waiting_it_is_enough() {
            let (sim, token) = start(config(4.0, RetryAfterForm::Decimal)).await;
            let refused = throttled(&sim, &token).await;
            let value = refused.retry_after.unwrap();
            assert_eq!(value.split('.').nth(1).map(str::len), Some(3), "{value}");

            // The server owed 0.25 s less whatever refilled since the last call that passed.
            let (wait, since_pass): (f64, f64) = (value.parse().unwrap(), refused.since_pass);
            assert!(
                wait <= 0.25 && wait >= 0.25 - since_pass - 0.001,
                "{value} after {since_pass}"
            );

            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            assert_eq!(call(&sim, &token).await.0, 204);
        }

        #[tokio::test]
        async fn seconds_round_a_short_refill_up_to_one() {
            let (sim, token) = start(config(2.0, RetryAfterForm::Seconds)).await;
            assert_eq!(
                throttled(&sim, &token).await.retry_after.as_deref(),
                Some("1")
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(call(&sim, &token).await.0, 204);
        }

        #[tokio::test]
        async fn an_http_date_is_a_whole_second_no_earlier_than_the_refill() {
            let (sim, token) = start(config(2.0, RetryAfterForm::HttpDate)).await;
            let value = throttled(&sim, &token).await.retry_after.unwrap();
            let end = httpdate::parse_http_date(&value).unwrap();
            assert!(
                end > SystemTime::now() - Duration::from_secs(1),
                "{value} lies in the past"
            );

            // A few milliseconds on top only make the test immune to clock reads racing.
            let wait = end.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
            assert_eq!(call(&sim, &token).await.0, 204);
        }

        #[tokio::test]
        async fn absent_sends_429_without_a_header() {
            let (sim, token) = start(config(2.0, RetryAfterForm::Absent)).await;
            assert_eq!(throttled(&sim, &token).await.retry_after, None);
            let books = sim.books();
            assert_eq!((books.throttled, books.calls_in_window), (1, 0));
        }

        #[tokio::test]
        async fn a_call_well_inside_the_window_is_counted() {
            let config = SimConfig {
                min_retry_after: Duration::from_secs(30),
                ..config(1.0, RetryAfterForm::Decimal)
            };
            let (sim, token) = start(config).await;
            throttled(&sim, &token).await;

            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, retry_after) = call(&sim, &token).await;
            assert_eq!(status, 429);
            assert!(seconds(retry_after) >= 30.0);
            let books = sim.books();
            assert_eq!((books.throttled, books.calls_in_window), (2, 1));
        }

        #[tokio::test]
        async fn a_call_already_on_the_wire_is_refused_but_not_counted() {
            let config = SimConfig {
                min_retry_after: Duration::from_secs(60),
                announce_grace: Duration::from_secs(30),
                ..config(1.0, RetryAfterForm::Decimal)
            };
            let (sim, token) = start(config).await;
            throttled(&sim, &token).await;
            assert_eq!(call(&sim, &token).await.0, 429);
            let books = sim.books();
            assert_eq!((books.throttled, books.calls_in_window), (2, 0));
        }

        #[tokio::test]
        async fn a_call_after_the_window_is_not_counted() {
            let config = SimConfig {
                announce_grace: Duration::ZERO,
                ..config(2.0, RetryAfterForm::Decimal)
            };
            let (sim, token) = start(config).await;
            let wait = seconds(throttled(&sim, &token).await.retry_after);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            assert_eq!(call(&sim, &token).await.0, 204);
            assert_eq!(sim.books().calls_in_window, 0);
        }

        #[tokio::test]
        async fn calls_inside_the_window_prolong_it() {
            let config = SimConfig {
                announce_grace: Duration::from_secs(30),
                ..config(1.0, RetryAfterForm::Decimal)
            };
            let (sim, token) = start(config).await;
            let refused = throttled(&sim, &token).await;
            let first = seconds(refused.retry_after);
            let second = seconds(call(&sim, &token).await.1);

            // The window's end moved out by 1/rate; "now" moved by at most `elapsed`.
            let elapsed = refused.sent.elapsed().as_secs_f64();
            assert!(
                second >= first + 1.0 - elapsed,
                "{first} then {second} within {elapsed}"
            );
        }

        async fn status(response: reqwest::Response) -> u16 {
            response.status().as_u16()
        }

        /// A rate so low that no token comes back while a test runs, however slow the machine.
        const NEVER: f64 = 0.001;

        #[tokio::test]
        async fn exhausting_the_write_bucket_leaves_reads_passing() {
            let (sim, token) = start(config(NEVER, RetryAfterForm::Seconds)).await;
            assert_eq!(call(&sim, &token).await.0, 204);
            let (status_code, retry_after) = call(&sim, &token).await;
            assert_eq!(status_code, 429);
            assert!(seconds(retry_after) > 60.0);

            let catalog = format!("{}/v1.0/appCatalogs/teamsApps", sim.url());
            assert_eq!(
                status(graph_get(&apps_url(&sim, "a@x", ""), &token).await).await,
                200
            );
            assert_eq!(status(graph_get(&catalog, &token).await).await, 200);
            let one = installation_url(&sim, "a@x", "unknown");
            assert_eq!(status(graph_get(&one, &token).await).await, 404);

            // An install spends the write budget, like the upgrade.
            let install = graph_post(&apps_url(&sim, "a@x", ""), &token).await;
            assert_eq!(status(install).await, 429);

            let books = sim.books();
            assert_eq!(books.throttled_for(RequestClass::InstalledAppsWrite), 2);
            assert_eq!(books.throttled_for(RequestClass::InstalledAppsRead), 0);
            assert_eq!(books.throttled_for(RequestClass::CatalogRead), 0);
            assert_eq!(books.throttled, 2);
        }

        #[tokio::test]
        async fn each_read_class_has_its_own_bucket_and_window() {
            let config = SimConfig {
                read_rate: Some(NEVER),
                read_burst: 1,
                announce_grace: Duration::ZERO,
                retry_after: RetryAfterForm::Seconds,
                ..SimConfig::default()
            };
            let (sim, token) = start(config).await;
            let list = apps_url(&sim, "a@x", "");
            let one = installation_url(&sim, "a@x", "i");
            let catalog = format!("{}/v1.0/appCatalogs/teamsApps", sim.url());

            assert_eq!(status(graph_get(&list, &token).await).await, 200);
            assert_eq!(status(graph_get(&list, &token).await).await, 429);
            // The same class: inside the window it opened, so counted as ignoring it.
            assert_eq!(status(graph_get(&one, &token).await).await, 429);

            assert_eq!(status(graph_get(&catalog, &token).await).await, 200);
            let refused = graph_get(&catalog, &token).await;
            let retry_after = refused.headers()["retry-after"].to_str().unwrap();
            assert!(seconds(Some(retry_after.to_string())) > 60.0);
            assert_eq!(status(refused).await, 429);
            assert_eq!(status(graph_get(&catalog, &token).await).await, 429);

            assert_eq!(call(&sim, &token).await.0, 204);
            let books = sim.books();
            assert_eq!(books.throttled_for(RequestClass::InstalledAppsRead), 2);
            assert_eq!(books.throttled_for(RequestClass::CatalogRead), 2);
            assert_eq!(books.throttled_for(RequestClass::InstalledAppsWrite), 0);
            assert_eq!((books.throttled, books.calls_in_window), (4, 2));
            assert_eq!(
                (books.installed_app_lists, books.installed_app_reads),
                (2, 1)
            );
            assert_eq!(books.catalog_reads, 3);
        }

        #[tokio::test]
        async fn set_class_rate_moves_one_class_only() {
            let config = SimConfig {
                read_burst: 1,
                ..SimConfig::default()
            };
            let (sim, token) = start(config).await;
            let catalog = format!("{}/v1.0/appCatalogs/teamsApps", sim.url());
            sim.set_class_rate(RequestClass::CatalogRead, Some(NEVER));

            assert_eq!(status(graph_get(&catalog, &token).await).await, 200);
            assert_eq!(status(graph_get(&catalog, &token).await).await, 429);
            for _ in 0..3 {
                let list = graph_get(&apps_url(&sim, "a@x", ""), &token).await;
                assert_eq!(status(list).await, 200);
            }
            assert_eq!(call(&sim, &token).await.0, 204);

            sim.set_class_rate(RequestClass::CatalogRead, None);
            assert_eq!(status(graph_get(&catalog, &token).await).await, 200);
        }

        #[tokio::test]
        async fn set_rate_moves_the_line_while_running() {
            let (sim, token) = start(SimConfig::default()).await;
            sim.set_rate(Some(1.0));
            let mut passed = 0;
            while passed < 60 && call(&sim, &token).await.0 == 204 {
                passed += 1;
            }
            // The default burst of 30, plus whatever refilled while the calls went out.
            assert!((30..60).contains(&passed), "{passed} calls passed");
            sim.set_rate(None);
            assert_eq!(call(&sim, &token).await.0, 204);
        }
    }
}
