//! The network a lab pretends to be behind: round-trip time, jitter and loss, which the
//! lab's delaying proxy applies to every connection.

use std::fmt;
use std::time::Duration;

use crate::LabError;

/// The least extra delay a "lost" chunk gets: Linux's minimum TCP retransmission timeout.
const MIN_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(200);

/// Simulated latency between the lab's clients and its hosts (see [`crate::LabOptions::latency`]).
///
/// Each direction of a connection is delayed by half the round trip: a chunk read from one
/// side is written to the other no earlier than its arrival plus `rtt / 2`, plus a random
/// extra delay up to `jitter` (uniform, drawn per chunk and direction). Order is always
/// preserved: a chunk is never delivered before the one read ahead of it.
///
/// `loss` is the fraction of chunks that are "lost". A TCP proxy cannot drop bytes (TCP would
/// not notice; the stream would just be corrupt), so a lost chunk is delivered late instead,
/// by one retransmission timeout ([`Latency::retransmit_timeout`]), and every later chunk of
/// that direction waits behind it, as TCP's head-of-line blocking does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// The round-trip time; each direction gets half.
    pub rtt: Duration,
    /// The most extra delay, per direction, a chunk gets at random.
    pub jitter: Duration,
    /// The fraction of chunks (0.0..=1.0) delayed by a retransmission timeout.
    pub loss: f64,
}

impl Latency {
    /// A latency of `rtt`, without jitter or loss.
    pub fn rtt(rtt: Duration) -> Self {
        Self {
            rtt,
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }

    /// The extra delay of a lost chunk: the round trip, at least 200 ms (Linux's minimum
    /// retransmission timeout).
    pub fn retransmit_timeout(&self) -> Duration {
        self.rtt.max(MIN_RETRANSMIT_TIMEOUT)
    }

    /// Checks that `loss` is a fraction.
    pub(crate) fn check(&self) -> Result<(), LabError> {
        if (0.0..=1.0).contains(&self.loss) {
            Ok(())
        } else {
            Err(LabError::BadLoss(self.loss))
        }
    }
}

/// `rtt 100ms, jitter 10ms, loss 0.1%`.
impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rtt {}, jitter {}, loss {}%",
            humantime::format_duration(self.rtt),
            humantime::format_duration(self.jitter),
            self.loss * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(rtt_ms: u64, rto_ms: u64) {
        let l = Latency::rtt(Duration::from_millis(rtt_ms));
        assert_eq!(l.retransmit_timeout(), Duration::from_millis(rto_ms));
    }

    #[test]
    fn retransmit_timeout_is_the_rtt_but_at_least_200ms() {
        case(0, 200);
        case(20, 200);
        case(200, 200);
        case(350, 350);
    }

    #[test]
    fn loss_must_be_a_fraction() {
        for (loss, ok) in [(0.0, true), (0.001, true), (1.0, true), (-0.1, false)] {
            let l = Latency {
                loss,
                ..Latency::rtt(Duration::ZERO)
            };
            assert_eq!(l.check().is_ok(), ok, "{loss}");
        }
        let nan = Latency {
            loss: f64::NAN,
            ..Latency::rtt(Duration::ZERO)
        };
        assert!(nan.check().is_err());
    }

    #[test]
    fn displays_like_the_flags() {
        let l = Latency {
            rtt: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            loss: 0.001,
        };
        assert_eq!(l.to_string(), "rtt 100ms, jitter 10ms, loss 0.1%");
    }
}
