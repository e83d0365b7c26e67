//! Per-minute rate limiting with a sliding-window estimate: the count of the current fixed
//! minute plus the previous minute's count weighted by how much of it the sliding window still
//! covers. Constant memory, no allocation, never more than the limit in any fixed minute.

use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct RateWindow {
    start: Option<Instant>,
    current: u32,
    previous: u32,
}

impl RateWindow {
    /// Moves the window forward to contain `now`.
    fn roll(&mut self, now: Instant) {
        let Some(start) = self.start else {
            self.start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < WINDOW {
            return;
        }
        if elapsed < 2 * WINDOW {
            self.previous = self.current;
            self.start = Some(start + WINDOW);
        } else {
            self.previous = 0;
            self.start = Some(now);
        }
        self.current = 0;
    }

    /// Seconds into the current window, as a fraction of the window.
    fn progress(&self, now: Instant) -> f64 {
        self.start.map_or(0.0, |start| {
            now.saturating_duration_since(start).as_secs_f64() / WINDOW.as_secs_f64()
        })
    }

    /// Whether one more start fits `limit` (negative: unlimited); otherwise the seconds to wait.
    pub(super) fn check(&mut self, now: Instant, limit: i64) -> Result<(), u64> {
        if limit < 0 {
            return Ok(());
        }
        if limit == 0 {
            return Err(WINDOW.as_secs());
        }
        self.roll(now);
        let limit = limit as f64;
        let progress = self.progress(now);
        let previous = f64::from(self.previous);
        let current = f64::from(self.current);
        let estimate = previous * (1.0 - progress) + current;
        if estimate + 1.0 <= limit {
            return Ok(());
        }
        // When does the estimate leave room for one more? Within this window only the
        // previous minute's weight decays; otherwise wait for the next window, where this
        // minute's count decays in turn.
        let room = limit - 1.0;
        let window = WINDOW.as_secs_f64();
        let remaining = (1.0 - progress) * window;
        let wait = if previous > 0.0 && current <= room {
            // previous * (1 - p') + current <= room  =>  p' >= 1 - (room - current) / previous
            let target = 1.0 - (room - current) / previous;
            (target - progress).max(0.0) * window
        } else if current > 0.0 {
            let target = (1.0 - room / current).max(0.0);
            remaining + target * window
        } else {
            remaining
        };
        // Whole milliseconds first, so float noise cannot add a second.
        let wait = (wait * 1000.0).round() / 1000.0;
        Err((wait.ceil() as u64).clamp(1, 2 * WINDOW.as_secs()))
    }

    /// Counts one start.
    pub(super) fn record(&mut self, now: Instant) {
        self.record_many(now, 1);
    }

    /// How many more starts fit `limit` now (`None`: unlimited).
    pub(super) fn headroom(&mut self, now: Instant, limit: i64) -> Option<u32> {
        if limit < 0 {
            return None;
        }
        self.roll(now);
        let estimate =
            f64::from(self.previous) * (1.0 - self.progress(now)) + f64::from(self.current);
        let room = (limit as f64 - estimate).floor().max(0.0);
        Some(if room >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            room as u32
        })
    }

    /// Counts `n` starts (a grant's invocation budget, counted when it is granted); returns
    /// the start of the window they were counted in, for [`RateWindow::refund`].
    pub(super) fn record_many(&mut self, now: Instant, n: u32) -> Option<Instant> {
        self.roll(now);
        self.current = self.current.saturating_add(n);
        self.start
    }

    /// Gives back `n` starts counted in the window that began at `counted_in` (the unused
    /// budget of a returned grant), while that window still counts; `now` rolls the window
    /// first.
    pub(super) fn refund(&mut self, now: Instant, counted_in: Option<Instant>, n: u32) {
        self.roll(now);
        let (Some(counted_in), Some(start)) = (counted_in, self.start) else {
            return;
        };
        if counted_in == start {
            self.current = self.current.saturating_sub(n);
        } else if counted_in + WINDOW == start {
            self.previous = self.previous.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `(seconds since start, expected)` steps against one window with `limit`, recording
    /// a start whenever one is allowed; `expected` is `Ok` or the Retry-After seconds.
    fn check(limit: i64, steps: &[(f64, Result<(), u64>)]) {
        let t0 = Instant::now();
        let mut window = RateWindow::default();
        for (i, &(at, expected)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs_f64(at);
            let got = window.check(now, limit);
            assert_eq!(got, expected, "step {i} at {at}s");
            if got.is_ok() {
                window.record(now);
            }
        }
    }

    #[test]
    fn unlimited_and_zero() {
        check(-1, &[(0.0, Ok(())), (0.0, Ok(())), (0.0, Ok(()))]);
        check(0, &[(0.0, Err(60)), (59.0, Err(60))]);
    }

    #[test]
    fn limit_within_one_minute() {
        check(
            2,
            &[
                (0.0, Ok(())),
                (1.0, Ok(())),
                // 2 in the current minute: wait for the next one, where they weigh 100%, and
                // for their weight to drop to 1 (half a minute): 59 + 30.
                (1.0, Err(89)),
                (59.0, Err(31)),
            ],
        );
    }

    #[test]
    fn previous_minute_decays() {
        check(
            2,
            &[
                (0.0, Ok(())),
                (0.0, Ok(())),
                // Next window: previous = 2 weighted 1.0 - 0.25 at 75s.
                (75.0, Err(15)),
                // At 90s the weight is 1.0: room for one.
                (90.0, Ok(())),
                // Now the current minute holds 1: wait for the next window (30 s).
                (90.0, Err(30)),
                // Much later everything is forgotten.
                (400.0, Ok(())),
                (400.0, Ok(())),
                (400.5, Err(90)),
            ],
        );
    }

    #[test]
    fn budgets_count_at_once_and_unused_ones_come_back() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        assert_eq!(w.headroom(t0, -1), None);
        assert_eq!(w.headroom(t0, 10), Some(10));
        let counted = w.record_many(t0, 7);
        assert_eq!(w.headroom(t0, 10), Some(3));
        assert!(w.check(t0, 10).is_ok());
        let more = w.record_many(t0, 3);
        assert_eq!(w.headroom(t0, 10), Some(0));
        assert!(w.check(t0, 10).is_err(), "the whole minute is granted");
        // Five of the first budget were not used: they fit again.
        w.refund(t0 + Duration::from_secs(1), counted, 5);
        assert_eq!(w.headroom(t0 + Duration::from_secs(1), 10), Some(5));
        // A refund after the window moved on lowers the previous minute's weight.
        let later = t0 + Duration::from_secs(61);
        let before = w.headroom(later, 10).expect("limited");
        w.refund(later, more, 3);
        let after = w.headroom(later, 10).expect("limited");
        assert!(after > before, "{before} -> {after}");
        // A refund for a window that no longer counts changes nothing.
        let much_later = t0 + Duration::from_secs(300);
        w.refund(much_later, counted, 100);
        assert_eq!(w.headroom(much_later, 10), Some(10));
    }
}
