//! The sled store's clock: the arrival times it hands out. They are also its events' keys,
//! the change feed's `seq` and the paging snapshot, so they must be strictly increasing,
//! across restarts too (the last one is kept under `CLOCK_KEY`), whatever the system clock
//! does.
//!
//! The clock follows a *timeline*: the system clock's reading at an anchor, advanced by the
//! time since boot (`CLOCK_BOOTTIME`, which nothing steps and which counts a suspend). Each
//! reading of the system clock is compared with the timeline, and a difference is a step of
//! the system clock, judged before it is followed:
//!
//! - up to [`TOLERANCE`], it is followed at once (NTP's small steps);
//! - a step back is followed at once. Arrival times cannot go back: they go on one
//!   microsecond after the last until the timeline passes it, which takes as long as the
//!   step was big;
//! - a step forward is followed once the system clock has kept it for as long as the step
//!   is big, or at once when it returns the system clock to where it was before the last
//!   step back (that step is undone); one undone before then is never followed.
//!
//! So a system clock stepped forward by mistake and put right within as long as the step
//! is big moves no arrival time at all; put right later, it places events ahead for no
//! longer than it lasted; a step back holds arrival times at the last one for no longer
//! than its size. (Following the system clock as it is, the last time plus a microsecond,
//! held every event after a mistaken step forward and its correction at the stepped time
//! until real time caught up, however short the mistake.) Each step is logged once, as a
//! warning with its size.
//!
//! [`Clock::stamp`] and [`Clock::now`] are pure (they take the readings), so the rules are
//! unit-tested with made-up readings; [`Reading::take`] reads the two real clocks.

use crate::domain::Timestamp;

/// A difference between the system clock and the timeline that is followed at once.
pub const TOLERANCE: u64 = 1_000_000;

/// The two clocks read at one moment, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The system clock: since the Unix epoch.
    pub wall: u64,
    /// Since boot, suspends included; never stepped.
    pub boot: u64,
}

impl Reading {
    /// Reads the system clock and the time since boot.
    pub fn take() -> Reading {
        Reading {
            wall: Timestamp::now().0,
            boot: since_boot(),
        }
    }
}

/// A step of the system clock, as the clock saw it: what [`Clock::stamp`] reports for the
/// log. Sizes are in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Stepped back: followed at once.
    Back { by: u64 },
    /// Stepped forward: followed once kept for as long as `by`.
    Forward { by: u64 },
    /// A step forward kept long enough: followed now.
    ForwardFollowed { by: u64 },
    /// The system clock went back to the timeline it had left (a step forward not yet
    /// followed, or before a step back): followed at once.
    Undone { by: u64 },
}

impl Step {
    /// Logs the step: a warning when it is seen, information when it is followed or undone.
    pub fn log(self) {
        let seconds = |by: u64| by as f64 / 1e6;
        match self {
            Step::Back { by } => tracing::warn!(
                step_seconds = seconds(by),
                "the system clock stepped back by {:.3} s; arrival times stay after the last \
                 one until the system clock passes it (at most {:.3} s)",
                seconds(by),
                seconds(by)
            ),
            Step::Forward { by } => tracing::warn!(
                step_seconds = seconds(by),
                "the system clock stepped forward by {:.3} s; arrival times follow it if it \
                 keeps that time for {:.3} s",
                seconds(by),
                seconds(by)
            ),
            Step::ForwardFollowed { by } => tracing::info!(
                step_seconds = seconds(by),
                "the system clock kept its step forward of {:.3} s; arrival times follow it",
                seconds(by)
            ),
            Step::Undone { by } => tracing::info!(
                step_seconds = seconds(by),
                "the system clock went back to the time it had left ({:.3} s away); arrival \
                 times follow it",
                seconds(by)
            ),
        }
    }
}

/// A point of the timeline: the system clock's reading at a time since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    wall: u64,
    boot: u64,
}

impl Anchor {
    fn of(reading: Reading) -> Anchor {
        Anchor {
            wall: reading.wall,
            boot: reading.boot,
        }
    }

    /// The timeline's time at `boot`.
    fn at(self, boot: u64) -> u64 {
        self.wall.saturating_add(boot.saturating_sub(self.boot))
    }
}

/// A step forward not followed yet: its size and when it was seen.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    by: u64,
    since: u64,
}

/// The clock: the last arrival time handed out and the timeline it follows.
#[derive(Debug)]
pub struct Clock {
    last: Timestamp,
    timeline: Anchor,
    /// The timeline before the last step back, to which a step forward may return.
    before_back: Option<Anchor>,
    ahead: Option<Ahead>,
}

impl Clock {
    /// A clock whose last arrival time was `last` (kept by the store), starting at
    /// `reading`. A store whose last time is ahead of the system clock (the clock stepped
    /// back while it was stopped, or it ran ahead before) goes on after it, and says so.
    pub fn start(last: Timestamp, reading: Reading) -> Clock {
        if last.0 > reading.wall.saturating_add(TOLERANCE) {
            let ahead = (last.0 - reading.wall) as f64 / 1e6;
            tracing::warn!(
                step_seconds = ahead,
                "the store's last arrival time is {ahead:.3} s ahead of the system clock; \
                 arrival times stay after it until the system clock passes it"
            );
        }
        Clock {
            last,
            timeline: Anchor::of(reading),
            before_back: None,
            ahead: None,
        }
    }

    /// The last arrival time handed out.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// Makes `at` (an imported arrival time) the last one if it is later.
    pub fn pass(&mut self, at: Timestamp) {
        self.last = self.last.max(at);
    }

    /// The clock's time at `reading`, handing nothing out: what listings, stats windows,
    /// retention and the sweep of old history go by. A step not yet seen by
    /// [`Clock::stamp`] is not followed here either.
    pub fn now(&self, reading: Reading) -> Timestamp {
        Timestamp(self.timeline.at(reading.boot))
    }

    /// The next arrival time at `reading`: the timeline's time, after the last one; and the
    /// step of the system clock this reading showed, if any.
    pub fn stamp(&mut self, reading: Reading) -> (Timestamp, Option<Step>) {
        let step = self.observe(reading);
        let at = self.timeline.at(reading.boot).max(self.last.0 + 1);
        self.last = Timestamp(at);
        (self.last, step)
    }

    /// Compares the system clock with the timeline and re-anchors the timeline as the rules
    /// of the module say.
    fn observe(&mut self, reading: Reading) -> Option<Step> {
        let timeline = self.timeline.at(reading.boot);
        let wall = reading.wall;
        if wall.abs_diff(timeline) <= TOLERANCE {
            self.timeline = Anchor::of(reading);
            return self.ahead.take().map(|ahead| Step::Undone { by: ahead.by });
        }
        if wall < timeline {
            self.before_back = Some(self.timeline);
            self.timeline = Anchor::of(reading);
            self.ahead = None;
            return Some(Step::Back {
                by: timeline - wall,
            });
        }
        let by = wall - timeline;
        let returns = self
            .before_back
            .is_some_and(|before| wall.abs_diff(before.at(reading.boot)) <= TOLERANCE);
        if returns {
            self.follow(reading);
            return Some(Step::Undone { by });
        }
        match self.ahead {
            Some(ahead) if ahead.by.abs_diff(by) <= TOLERANCE => {
                if reading.boot.saturating_sub(ahead.since) < ahead.by {
                    return None;
                }
                self.follow(reading);
                Some(Step::ForwardFollowed { by })
            }
            _ => {
                self.ahead = Some(Ahead {
                    by,
                    since: reading.boot,
                });
                Some(Step::Forward { by })
            }
        }
    }

    fn follow(&mut self, reading: Reading) {
        self.timeline = Anchor::of(reading);
        self.before_back = None;
        self.ahead = None;
    }
}

/// Microseconds since boot, suspends included (`CLOCK_BOOTTIME`; elsewhere than Linux,
/// the monotonic clock).
fn since_boot() -> u64 {
    #[cfg(target_os = "linux")]
    const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
    #[cfg(not(target_os = "linux"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given, and nothing else.
    let read = unsafe { libc::clock_gettime(CLOCK, &mut time) };
    if read != 0 {
        return 0;
    }
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(time.tv_nsec).unwrap_or(0);
    seconds * 1_000_000 + nanos / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    /// A system clock reading in 2026.
    const START: u64 = 1_790_000_000 * SECOND;

    /// The system clock and the time since boot, driven by a test: real time passes with
    /// `pass`, and `offset` is how far the system clock is from real time.
    struct Machine {
        real: u64,
        offset: i64,
        clock: Clock,
    }

    impl Machine {
        fn new() -> Machine {
            let reading = Reading {
                wall: START,
                boot: 0,
            };
            Machine {
                real: START,
                offset: 0,
                clock: Clock::start(Timestamp(0), reading),
            }
        }

        fn reading(&self) -> Reading {
            Reading {
                wall: self.real.saturating_add_signed(self.offset),
                boot: self.real - START,
            }
        }

        fn pass(&mut self, micros: u64) {
            self.real += micros;
        }

        /// Stamps one event now; answers how far from real time it was placed.
        fn stamp(&mut self) -> (i64, Option<Step>) {
            let (at, step) = self.clock.stamp(self.reading());
            (at.0 as i64 - self.real as i64, step)
        }

        /// Stamps an event a second for `seconds`; answers the largest distance from real
        /// time, and every step reported.
        fn run(&mut self, seconds: u64) -> (i64, Vec<Step>) {
            let mut worst = 0i64;
            let mut steps = Vec::new();
            for _ in 0..seconds {
                self.pass(SECOND);
                let (off, step) = self.stamp();
                if off.abs() > worst.abs() {
                    worst = off;
                }
                steps.extend(step);
            }
            (worst, steps)
        }
    }

    #[test]
    fn stamps_follow_the_system_clock_and_strictly_increase() {
        let mut machine = Machine::new();
        let mut last = 0;
        for _ in 0..1000 {
            let (at, step) = machine.clock.stamp(machine.reading());
            assert!(at.0 > last, "strictly increasing");
            assert_eq!(step, None);
            last = at.0;
        }
        assert_eq!(machine.run(10), (0, Vec::new()), "on time, no step");
    }

    #[test]
    fn a_mistaken_step_forward_put_right_before_it_lasted_its_size_moves_no_arrival_time() {
        let mut machine = Machine::new();
        machine.run(10);
        machine.offset = HOUR as i64;
        let (worst, steps) = machine.run(30 * 60);
        assert_eq!(worst, 0, "events keep real time while the step is judged");
        assert_eq!(
            steps,
            [Step::Forward { by: HOUR }],
            "logged once, with its size"
        );
        machine.offset = 0;
        let (worst, steps) = machine.run(60);
        assert_eq!(worst, 0);
        assert_eq!(steps, [Step::Undone { by: HOUR }]);
    }

    #[test]
    fn a_step_forward_kept_as_long_as_its_size_is_followed() {
        let mut machine = Machine::new();
        machine.offset = (5 * MINUTE) as i64;
        let (worst, steps) = machine.run(5 * 60 - 1);
        assert_eq!(worst, 0);
        assert_eq!(steps, [Step::Forward { by: 5 * MINUTE }]);
        let (worst, steps) = machine.run(2);
        assert_eq!(
            worst,
            (5 * MINUTE) as i64,
            "followed once kept for 5 minutes"
        );
        assert_eq!(steps, [Step::ForwardFollowed { by: 5 * MINUTE }]);
    }

    #[test]
    fn a_mistaken_step_forward_put_right_late_misplaces_events_for_no_longer_than_it_lasted() {
        let mut machine = Machine::new();
        machine.run(10);
        machine.offset = (5 * MINUTE) as i64;
        let lasted = 20 * 60;
        let mut misplaced = 0;
        let mut steps = Vec::new();
        for second in 0..3 * 60 * 60 {
            if second == lasted {
                machine.offset = 0;
            }
            machine.pass(SECOND);
            let (off, step) = machine.stamp();
            steps.extend(step);
            if off.unsigned_abs() > TOLERANCE {
                misplaced += 1;
            }
        }
        assert_eq!(
            steps,
            [
                Step::Forward { by: 5 * MINUTE },
                Step::ForwardFollowed { by: 5 * MINUTE },
                Step::Back { by: 5 * MINUTE }
            ]
        );
        // Ahead from when it was followed (5 minutes in) to its end, then held after the
        // last time for the step's size: 15 + 5 minutes, the 20 it lasted.
        assert!(misplaced <= lasted, "misplaced for {misplaced} s");
        assert!(
            misplaced >= lasted - 5 * 60 - 2,
            "misplaced for {misplaced} s"
        );
        let (worst, _) = machine.run(10);
        assert_eq!(worst, 0, "real time again");
    }

    #[test]
    fn a_step_back_holds_arrival_times_for_no_longer_than_its_size_then_follows() {
        let mut machine = Machine::new();
        machine.run(10);
        machine.offset = -((10 * SECOND) as i64);
        let mut times = Vec::new();
        let mut steps = Vec::new();
        for _ in 0..100 {
            machine.pass(SECOND / 10);
            let (at, step) = machine.clock.stamp(machine.reading());
            times.push(at.0);
            steps.extend(step);
        }
        assert_eq!(steps, [Step::Back { by: 10 * SECOND }]);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert!(
            times.iter().all(|at| *at <= START + 10 * SECOND + 100),
            "held right after the last time"
        );
        machine.pass(SECOND);
        let wall_after = machine.reading().wall;
        let (off, _) = machine.stamp();
        assert_eq!(
            off,
            -((10 * SECOND) as i64),
            "after the step's size, the system clock's time again"
        );
        assert_eq!(machine.clock.last().0, wall_after);
    }

    #[test]
    fn a_step_back_put_right_is_followed_at_once() {
        let mut machine = Machine::new();
        machine.run(10);
        machine.offset = -(HOUR as i64);
        let (_, steps) = machine.run(60);
        assert_eq!(steps, [Step::Back { by: HOUR }]);
        machine.offset = 0;
        let (worst, steps) = machine.run(5);
        assert_eq!(worst, 0, "back on real time at once");
        assert_eq!(steps, [Step::Undone { by: HOUR }]);
    }

    #[test]
    fn small_steps_and_a_suspend_are_followed_without_a_step() {
        let mut machine = Machine::new();
        machine.offset = (SECOND / 2) as i64;
        let (worst, steps) = machine.run(3);
        assert_eq!((worst, steps), ((SECOND / 2) as i64, Vec::new()));
        // A suspend: real time and the time since boot pass together.
        machine.pass(8 * HOUR);
        let (worst, steps) = machine.run(3);
        assert_eq!((worst, steps), ((SECOND / 2) as i64, Vec::new()));
    }

    #[test]
    fn a_store_ahead_of_the_system_clock_goes_on_after_its_last_time() {
        let reading = Reading {
            wall: START,
            boot: 0,
        };
        let mut clock = Clock::start(Timestamp(START + MINUTE), reading);
        let (at, _) = clock.stamp(reading);
        assert_eq!(at.0, START + MINUTE + 1);
        assert_eq!(clock.now(reading).0, START, "now is the system clock's");
    }
}
