//! Rollout settings: batch sizes, failure budgets and per-variable caps for `fleet upgrade`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One batch size: an absolute number of hosts or a percentage of all selected hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// That many hosts.
    Count(usize),
    /// That percentage (1-100) of the selected hosts, rounded up.
    Percent(u8),
}

impl Amount {
    /// Resolves against `total` hosts (a percentage rounds up, and is at least 1 when total > 0).
    pub fn of(self, total: usize) -> usize {
        match self {
            Amount::Count(n) => n.min(total),
            Amount::Percent(p) => (total * usize::from(p)).div_ceil(100).min(total),
        }
    }
}

impl FromStr for Amount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let n: u8 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage"))?;
            if !(0..=100).contains(&n) {
                return Err(format!("`{s}` must be between 0% and 100%"));
            }
            return Ok(Amount::Percent(n));
        }
        t.parse()
            .map(Amount::Count)
            .map_err(|_| format!("`{s}` is not a number or a percentage"))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Batch sizes in order, e.g. `1,10%,50%,100%`: a canary of one host, then growing batches.
/// Each entry is the batch's size; the last one repeats until every host is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batches(pub Vec<Amount>);

impl FromStr for Batches {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let sizes = s
            .split(',')
            .map(str::parse::<Amount>)
            .collect::<Result<Vec<_>, _>>()?;
        if sizes.is_empty()
            || sizes
                .iter()
                .any(|a| matches!(a, Amount::Count(0) | Amount::Percent(0)))
        {
            return Err(format!(
                "batches `{s}`: every batch needs at least one host"
            ));
        }
        Ok(Batches(sizes))
    }
}

impl Batches {
    /// Splits `total` hosts into batch sizes.
    pub fn sizes(&self, total: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut done = 0;
        let mut i = 0;
        while done < total {
            let a = self.0[i.min(self.0.len() - 1)];
            let n = a.of(total).max(1).min(total - done);
            out.push(n);
            done += n;
            i += 1;
        }
        out
    }
}

/// The `[rollout]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rollout {
    /// Batch sizes (default: `1,100%`, a canary then the rest).
    pub batches: Option<Batches>,
    /// Failures tolerated per batch and for the whole run.
    pub max_fail: Option<Amount>,
    /// At most N hosts in flight that share a value of this variable.
    pub max_per: BTreeMap<String, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn case(spec: &str, total: usize, expected: &[usize]) {
        let b: Batches = spec.parse().unwrap();
        assert_eq!(b.sizes(total), expected, "{spec} of {total}");
    }

    #[test]
    fn batch_sizes() {
        case("1,10%,50%,100%", 20, &[1, 2, 10, 7]);
        case("1,100%", 10, &[1, 9]);
        case("2", 5, &[2, 2, 1]);
        case("50%", 3, &[2, 1]);
        case("1,10%", 1, &[1]);
        assert!("0,5".parse::<Batches>().is_err());
        assert!("1,x".parse::<Batches>().is_err());
        assert!("150%".parse::<Amount>().is_err());
        assert_eq!("10%".parse::<Amount>().unwrap().of(25), 3);
    }
}
