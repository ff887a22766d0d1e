//! Handshake admission: how many handshakes (TCP connect, key exchange, authentication) are
//! in flight at once, across every target of a [`Client`](crate::Client).
//!
//! A fixed number cannot suit both ends of where fleet runs. On loopback or a small
//! controller, the CPU (the controller's, and the lab's sshds' on the same machine) is the
//! limit: more handshakes at once only make each slower and hold more memory, and thousands
//! started together overflow listen backlogs and connect timeouts. On a real network each
//! handshake is 6 to 8 round trips of waiting: the CPU idles, and the number in flight is
//! what bounds the speed (64 at a time over 100 ms is ~100 hosts a second, where the round
//! trips allow ten times that).
//!
//! The rule, evaluated every [`TICK`] while targets wait for a slot:
//! - **Grow** (by half, up to the ceiling) while the machine's CPU has headroom (busy below
//!   [`SATURATED`], read from `/proc/stat`) and handshakes complete at their uncongested
//!   speed (recent completion time within [`INFLATED`] times the fastest seen, or none
//!   completed yet).
//! - **Shrink** (by an eighth, down to the start) when the CPU is saturated and handshakes
//!   have slowed past [`INFLATED`] times the fastest: they queue for the CPU, so fewer at
//!   once finish as fast and hold less. Never below the start: the fastest handshakes are
//!   the first ones, met by an idle machine, so on loopback every later one looks slow, and
//!   a window cut to a handful no longer keeps two cores busy (measured: a third slower).
//! - **Come back to the start** ([`START_WINDOW`]) when handshakes slow past [`SLOW`] times
//!   the fastest without the CPU being the cause: something shared on the way (a jump host, a
//!   link) is congested, or the fleet mixes near and far hosts, where the start is what fleet
//!   always did.
//! - Otherwise **hold**. With no CPU reading (not Linux) the window stays at the start.
//!
//! The ceiling is [`DEFAULT_CEILING`]. An explicit `--max-handshakes N` fixes the window at
//! N instead: the operator said how many, and admission uses that many whenever targets
//! wait, never more.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How often the window is reconsidered while targets wait.
pub(crate) const TICK: Duration = Duration::from_millis(50);
/// The window a run starts with (what a fixed limit used to be).
pub(crate) const START_WINDOW: usize = 64;
/// The ceiling when none is given.
pub(crate) const DEFAULT_CEILING: usize = 1024;
/// CPU busy fraction at which the machine counts as saturated.
pub(crate) const SATURATED: f64 = 0.9;
/// Completion time (over the fastest seen) past which handshakes are queuing.
pub(crate) const INFLATED: f64 = 2.0;
/// Completion time (over the fastest seen) past which, with CPU to spare, something shared
/// on the way is congested.
pub(crate) const SLOW: f64 = 4.0;

/// The window's arithmetic, kept apart from clocks and locks so it can be tested alone.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    window: usize,
    ceiling: usize,
    /// Whether the window follows the rule, or stays where it was set.
    adaptive: bool,
    /// Fastest handshake completed so far.
    fastest: Option<Duration>,
    /// Recent completion time (moving average).
    recent: Option<Duration>,
    /// Recent CPU busy fraction (moving average of the ticks' readings).
    busy: Option<f64>,
}

impl Controller {
    /// A window that adapts below `ceiling`.
    pub(crate) fn new(ceiling: usize) -> Controller {
        let ceiling = ceiling.max(1);
        Controller {
            window: START_WINDOW.min(ceiling),
            ceiling,
            adaptive: true,
            fastest: None,
            recent: None,
            busy: None,
        }
    }

    /// A window fixed at `n`.
    pub(crate) fn fixed(n: usize) -> Controller {
        Controller {
            window: n.max(1),
            adaptive: false,
            ..Controller::new(n)
        }
    }

    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// A handshake completed in `took`.
    pub(crate) fn completed(&mut self, took: Duration) {
        self.fastest = Some(self.fastest.map_or(took, |f| f.min(took)));
        // An eighth of each new one: a few slow hosts do not swing the window.
        self.recent = Some(self.recent.map_or(took, |r| (r * 7 + took) / 8));
    }

    /// How much slower recent handshakes are than the fastest.
    fn slowdown(&self) -> Option<f64> {
        let (fastest, recent) = (self.fastest?, self.recent?);
        Some(recent.as_secs_f64() / fastest.as_secs_f64().max(1e-6))
    }

    /// One tick: `busy` is the CPU busy fraction since the last one (`None` when it cannot be
    /// read), `waiting` the targets waiting for a slot.
    pub(crate) fn tick(&mut self, busy: Option<f64>, waiting: usize) {
        let Some(now) = busy.filter(|_| self.adaptive) else {
            return;
        };
        let busy = self.busy.map_or(now, |b| (b + now) / 2.0);
        self.busy = Some(busy);
        let slowdown = self.slowdown();
        let start = START_WINDOW.min(self.ceiling);
        let cpu_bound = busy >= SATURATED && slowdown.is_some_and(|s| s > INFLATED);
        let congested = busy < SATURATED && slowdown.is_some_and(|s| s > SLOW);
        if cpu_bound || congested {
            if self.window > start {
                self.window = (self.window - self.window / 8).max(start);
            }
        } else if busy >= SATURATED {
            // Saturated, handshakes still fast: hold.
        } else if waiting > 0 && slowdown.is_none_or(|s| s <= INFLATED) {
            self.window = (self.window + self.window / 2 + 1).min(self.ceiling);
        }
    }
}

/// The machine's CPU time so far, in clock ticks: (busy, total).
fn cpu_times() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

struct State {
    ctl: Controller,
    in_flight: usize,
    waiting: usize,
    peak: usize,
    ticking: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Admits handshakes by the rule above.
pub(crate) struct Admission {
    shared: Arc<Shared>,
}

/// A handshake's place; dropping it frees the place.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    since: Instant,
}

impl Slot {
    /// The handshake succeeded: its time counts towards the rule.
    pub(crate) fn done(self) {
        self.shared.lock().ctl.completed(self.since.elapsed());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.in_flight -= 1;
        let free = s.in_flight < s.ctl.window();
        drop(s);
        if free {
            self.shared.wake.notify_one();
        }
    }
}

/// Counts a waiting target for as long as it waits (also when its future is dropped).
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

impl Admission {
    /// `fixed`: the window stays at `limit`; else it adapts below it.
    pub(crate) fn new(limit: usize, fixed: bool) -> Admission {
        let ctl = if fixed {
            Controller::fixed(limit)
        } else {
            Controller::new(limit)
        };
        Admission {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ctl,
                    in_flight: 0,
                    waiting: 0,
                    peak: 0,
                    ticking: false,
                }),
                wake: Notify::new(),
            }),
        }
    }

    /// The most handshakes in flight at once so far.
    pub(crate) fn peak(&self) -> usize {
        self.shared.lock().peak
    }

    /// Waits for a place. Cancel safe: a dropped wait takes no place, and a wake-up it was
    /// given passes to the next waiter.
    pub(crate) async fn acquire(&self) -> Slot {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let waiting = {
                let mut s = self.shared.lock();
                if s.in_flight < s.ctl.window() {
                    s.in_flight += 1;
                    s.peak = s.peak.max(s.in_flight);
                    return Slot {
                        shared: self.shared.clone(),
                        since: Instant::now(),
                    };
                }
                s.waiting += 1;
                if !s.ticking && s.ctl.adaptive {
                    s.ticking = true;
                    tokio::spawn(ticker(Arc::downgrade(&self.shared)));
                }
                Waiting(&self.shared)
            };
            notified.await;
            drop(waiting);
        }
    }
}

/// Reconsiders the window every tick while targets wait; ends when none does.
async fn ticker(shared: Weak<Shared>) {
    let mut last = cpu_times();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = cpu_times();
        let busy = match (last, now) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        if now.is_some() {
            last = now;
        }
        let free = {
            let mut s = shared.lock();
            if s.waiting == 0 {
                s.ticking = false;
                return;
            }
            let waiting = s.waiting;
            s.ctl.tick(busy, waiting);
            s.ctl.window().saturating_sub(s.in_flight).min(waiting)
        };
        for _ in 0..free {
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_real_network_opens_up_to_the_ceiling() {
        // 100 ms round trips: handshakes take ~700 ms whatever the window, the CPU idles.
        let mut c = Controller::new(DEFAULT_CEILING);
        assert_eq!(c.window(), START_WINDOW);
        for _ in 0..5 {
            c.tick(Some(0.1), 900);
        }
        assert!(c.window() > 4 * START_WINDOW, "{}", c.window());
        for _ in 0..20 {
            c.completed(ms(700));
            c.tick(Some(0.2), 500);
        }
        assert_eq!(c.window(), DEFAULT_CEILING);
    }

    #[test]
    fn a_saturated_cpu_holds_then_shrinks_as_handshakes_queue() {
        let mut c = Controller::new(DEFAULT_CEILING);
        c.completed(ms(40));
        c.tick(Some(1.0), 500);
        assert_eq!(c.window(), START_WINDOW, "saturated, not slower: hold");
        for _ in 0..30 {
            c.completed(ms(400));
            c.tick(Some(1.0), 500);
        }
        assert_eq!(c.window(), START_WINDOW, "loopback: never below the start");
        // Opened on a network, then the CPU saturates with handshakes queuing: back down.
        let mut c = Controller::new(DEFAULT_CEILING);
        for _ in 0..8 {
            c.tick(Some(0.1), 900);
        }
        let wide = c.window();
        c.completed(ms(40));
        for _ in 0..10 {
            c.completed(ms(400));
            c.tick(Some(1.0), 500);
        }
        assert!(
            c.window() < wide && c.window() >= START_WINDOW,
            "{wide} -> {}",
            c.window()
        );
        // Once the CPU has headroom and handshakes are fast again, it grows back.
        for _ in 0..60 {
            c.completed(ms(40));
            c.tick(Some(0.3), 500);
        }
        assert!(c.window() > START_WINDOW, "{}", c.window());
    }

    #[test]
    fn slow_handshakes_with_cpu_to_spare_come_back_to_the_start() {
        let mut c = Controller::new(DEFAULT_CEILING);
        for _ in 0..6 {
            c.tick(Some(0.1), 900);
        }
        let wide = c.window();
        assert!(wide > START_WINDOW);
        for _ in 0..40 {
            c.completed(ms(5));
            c.completed(ms(900));
            c.tick(Some(0.1), 900);
        }
        assert_eq!(c.window(), START_WINDOW, "from {wide}");
    }

    #[test]
    fn no_demand_and_no_cpu_reading_never_grow() {
        let mut c = Controller::new(DEFAULT_CEILING);
        for _ in 0..20 {
            c.tick(Some(0.0), 0);
        }
        assert_eq!(c.window(), START_WINDOW);
        for _ in 0..20 {
            c.tick(None, 900);
        }
        assert_eq!(c.window(), START_WINDOW);
    }

    #[test]
    fn a_fixed_window_stays_where_it_was_set() {
        for n in [1, 3, 200, 5000] {
            let mut c = Controller::fixed(n);
            for i in 0..50 {
                c.completed(ms(10 + i));
                c.tick(Some(if i < 25 { 0.0 } else { 1.0 }), 1000);
                assert_eq!(c.window(), n);
            }
        }
    }

    #[test]
    fn a_ceiling_is_never_exceeded() {
        for ceiling in [1, 3, 64, 100] {
            let mut c = Controller::new(ceiling);
            assert!(c.window() <= ceiling);
            for i in 0..100 {
                c.completed(ms(if i % 2 == 0 { 10 } else { 50 }));
                c.tick(Some(if i < 50 { 0.0 } else { 1.0 }), 1000);
                assert!(c.window() <= ceiling && c.window() >= 1, "{ceiling}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admission_holds_the_window_and_hands_places_on() {
        let a = Arc::new(Admission::new(3, false));
        let mut tasks = Vec::new();
        let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..40 {
            let (a, live) = (a.clone(), live.clone());
            tasks.push(tokio::spawn(async move {
                let slot = a.acquire().await;
                let n = live.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                assert!(n <= 3, "{n} in flight");
                tokio::time::sleep(ms(2)).await;
                live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                slot.done();
            }));
        }
        // A wait given up takes no place.
        let gone = {
            let a = a.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(ms(1), a.acquire()).await;
            })
        };
        for t in tasks {
            t.await.unwrap();
        }
        gone.await.unwrap();
        assert_eq!(a.peak(), 3);
        assert_eq!(a.shared.lock().in_flight, 0);
        assert_eq!(a.shared.lock().waiting, 0);
    }

    #[test]
    fn cpu_times_read_on_linux() {
        if std::path::Path::new("/proc/stat").exists() {
            let (busy, total) = cpu_times().expect("/proc/stat");
            assert!(busy <= total && total > 0);
        }
    }
}
