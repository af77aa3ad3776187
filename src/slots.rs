//! How many calls may be in flight: fixed when the admin says so, otherwise
//! derived from the pace and the latency Graph shows, within a cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Never fewer calls in flight than this when the limit adapts.
const MIN_SLOTS: usize = 4;
/// Never more: past this, a slow Graph is a problem more calls do not solve.
const MAX_SLOTS: usize = 1024;
/// Weight of the newest latency in the running average.
const SMOOTHING: f64 = 0.1;

/// The in-flight limit the feeder acquires a slot from before each row.
pub struct Slots {
    semaphore: Arc<Semaphore>,
    adaptive: bool,
    state: Mutex<SlotState>,
}

struct SlotState {
    target: usize,
    /// Permits to take out of circulation as rows finish (shrinking).
    owed: usize,
    /// Running average of one call's latency, in seconds.
    latency: Option<f64>,
}

impl Slots {
    /// Exactly `n` calls in flight, as `--concurrency` says.
    pub fn fixed(n: usize) -> Slots {
        Slots::with(n, false)
    }

    /// Start at `initial` and follow the latency from then on.
    pub fn adaptive(initial: usize) -> Slots {
        Slots::with(initial.clamp(MIN_SLOTS, MAX_SLOTS), true)
    }

    fn with(n: usize, adaptive: bool) -> Slots {
        Slots {
            semaphore: Arc::new(Semaphore::new(n)),
            adaptive,
            state: Mutex::new(SlotState {
                target: n,
                owed: 0,
                latency: None,
            }),
        }
    }

    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// One call took `latency` from sending to its answer.
    pub fn observe(&self, latency: Duration) {
        let mut state = self.state.lock().expect("slots lock");
        let sample = latency.as_secs_f64();
        state.latency = Some(match state.latency {
            Some(average) => average + SMOOTHING * (sample - average),
            None => sample,
        });
    }

    /// Re-derive the limit for a pace of `rate` calls a second.
    pub fn adjust(&self, rate: f64) {
        if !self.adaptive {
            return;
        }
        let mut state = self.state.lock().expect("slots lock");
        let Some(latency) = state.latency else { return };
        let target = wanted(rate, latency);
        if target > state.target {
            let grow = target - state.target;
            let repaid = grow.min(state.owed);
            state.owed -= repaid;
            self.semaphore.add_permits(grow - repaid);
        } else {
            state.owed += state.target - target;
        }
        state.target = target;
        let forgotten = self.semaphore.forget_permits(state.owed);
        state.owed -= forgotten;
    }

    /// The current limit.
    pub fn target(&self) -> usize {
        self.state.lock().expect("slots lock").target
    }
}

/// In-flight calls needed to hold `rate` calls a second when each takes
/// `latency` seconds (Little's law), with a quarter more for the calls that
/// take longer than average, and a few spare.
pub fn wanted(rate: f64, latency: f64) -> usize {
    let needed = (rate * latency * 1.25).ceil();
    if !needed.is_finite() {
        return MAX_SLOTS;
    }
    (needed as usize + MIN_SLOTS).clamp(MIN_SLOTS, MAX_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_second_calls_at_thirty_a_second_need_about_eighty_in_flight() {
        assert_eq!(wanted(30.0, 2.0), 79);
        assert_eq!(wanted(30.0, 0.1), 8);
        assert_eq!(wanted(0.5, 0.01), MIN_SLOTS + 1);
        assert_eq!(wanted(300.0, 60.0), MAX_SLOTS);
    }

    #[tokio::test]
    async fn the_limit_follows_the_latency_up_and_down() {
        let slots = Slots::adaptive(10);
        for _ in 0..200 {
            slots.observe(Duration::from_secs(2));
        }
        slots.adjust(30.0);
        assert_eq!(slots.target(), 79);
        assert_eq!(slots.semaphore.available_permits(), 79);

        let held = slots.acquire().await;
        for _ in 0..200 {
            slots.observe(Duration::from_millis(100));
        }
        slots.adjust(30.0);
        assert_eq!(slots.target(), 8);
        assert_eq!(slots.semaphore.available_permits(), 7, "one is still held");
        drop(held);
        assert_eq!(slots.semaphore.available_permits(), 8);
    }

    #[tokio::test]
    async fn a_fixed_limit_never_moves() {
        let slots = Slots::fixed(3);
        slots.observe(Duration::from_secs(5));
        slots.adjust(30.0);
        assert_eq!(slots.target(), 3);
        assert_eq!(slots.semaphore.available_permits(), 3);
    }
}
