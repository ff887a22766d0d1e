//! When each chunk of one direction of a proxied connection may be delivered: half the round
//! trip after it arrived, plus jitter, plus a retransmission timeout when it is "lost", and
//! never before the chunk ahead of it.

use std::time::{Duration, Instant};

use crate::Latency;

/// The delivery times of one direction of one connection.
#[derive(Debug)]
pub(crate) struct Schedule {
    half_rtt: Duration,
    jitter: Duration,
    loss: f64,
    retransmit: Duration,
    rng: SplitMix64,
    /// The delivery time of the previous chunk: nothing may overtake it.
    last: Option<Instant>,
}

impl Schedule {
    /// A schedule for `latency`, its randomness seeded with `seed`.
    pub(crate) fn new(latency: &Latency, seed: u64) -> Self {
        Self {
            half_rtt: latency.rtt / 2,
            jitter: latency.jitter,
            loss: latency.loss,
            retransmit: latency.retransmit_timeout(),
            rng: SplitMix64(seed),
            last: None,
        }
    }

    /// When a chunk (or the end of the stream) that arrived at `arrival` may be delivered:
    /// `arrival + rtt/2 + U[0, jitter]`, plus the retransmission timeout for a lost one, but
    /// no earlier than the chunk before it.
    pub(crate) fn deliver_at(&mut self, arrival: Instant) -> Instant {
        let mut delay = self.half_rtt;
        if !self.jitter.is_zero() {
            delay += self.jitter.mul_f64(self.rng.unit());
        }
        if self.loss > 0.0 && self.rng.unit() < self.loss {
            delay += self.retransmit;
        }
        let at = (arrival + delay).max(self.last.unwrap_or(arrival));
        self.last = Some(at);
        at
    }
}

/// A small, fast pseudo-random generator (SplitMix64): the jitter and loss of a test lab need
/// no better, and the lab takes no dependency for it.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        // The top 53 bits make every value exactly representable.
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::proxy) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    pub(in crate::proxy) fn latency(rtt: u64, jitter: u64, loss: f64) -> Latency {
        Latency {
            rtt: ms(rtt),
            jitter: ms(jitter),
            loss,
        }
    }

    /// Delivery offsets (from `t0`) of chunks arriving at the given offsets.
    fn offsets(l: Latency, seed: u64, arrivals: &[u64]) -> Vec<Duration> {
        let t0 = Instant::now();
        let mut s = Schedule::new(&l, seed);
        arrivals
            .iter()
            .map(|a| s.deliver_at(t0 + ms(*a)) - t0)
            .collect()
    }

    #[test]
    fn without_jitter_each_chunk_waits_half_the_rtt() {
        assert_eq!(
            offsets(latency(100, 0, 0.0), 1, &[0, 0, 10, 200]),
            [ms(50), ms(50), ms(60), ms(250)]
        );
        assert_eq!(offsets(latency(0, 0, 0.0), 1, &[0, 7]), [ms(0), ms(7)]);
    }

    #[test]
    fn jitter_adds_at_most_its_amount_and_never_reorders() {
        for seed in 0..50 {
            let arrivals: Vec<u64> = (0..200).collect();
            let got = offsets(latency(20, 30, 0.0), seed, &arrivals);
            let mut varied = false;
            for (i, (a, d)) in arrivals.iter().zip(&got).enumerate() {
                assert!(*d >= ms(a + 10), "seed {seed} chunk {i}: {d:?}");
                if i > 0 {
                    assert!(
                        *d >= got[i - 1],
                        "seed {seed}: chunk {i} overtook {}",
                        i - 1
                    );
                }
                // Never later than its own worst case or the previous chunk's delivery.
                let own = ms(a + 10 + 30);
                assert!(*d <= own.max(if i > 0 { got[i - 1] } else { own }));
                varied |= *d != ms(a + 10);
            }
            assert!(varied, "seed {seed}: no jitter at all");
        }
    }

    #[test]
    fn lost_chunks_wait_a_retransmission_timeout_and_hold_up_the_rest() {
        // Every chunk lost: each waits rtt/2 + 200 ms.
        assert_eq!(offsets(latency(20, 0, 1.0), 3, &[0, 5]), [ms(210), ms(215)]);
        // An rtt above 200 ms is the timeout.
        assert_eq!(offsets(latency(400, 0, 1.0), 3, &[0]), [ms(600)]);
        // About the asked fraction is lost, and a loss delays the chunks behind it.
        let arrivals: Vec<u64> = (0..20_000).collect();
        let got = offsets(latency(20, 0, 0.05), 9, &arrivals);
        let lost = got
            .iter()
            .zip(&arrivals)
            .enumerate()
            .filter(|(i, (d, a))| **d >= ms(**a + 210) && (*i == 0 || got[i - 1] < **d))
            .count();
        assert!((700..1300).contains(&lost), "{lost} of 20000 lost");
        let first_lost = got
            .iter()
            .zip(&arrivals)
            .position(|(d, a)| *d == ms(a + 210))
            .expect("a lost chunk");
        // The next chunk, due 1 ms later, waits for the lost one.
        assert!(got[first_lost + 1] >= got[first_lost]);
        assert!(got[first_lost + 1] > ms(arrivals[first_lost + 1] + 10));
    }

    #[test]
    fn random_units_stay_in_range() {
        let mut r = SplitMix64(42);
        let v: Vec<f64> = (0..10_000).map(|_| r.unit()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }
}
