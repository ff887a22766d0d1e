//! The fault suite (`make test-faults`): fleet driven into failure on purpose, and the end
//! state checked on the hosts and in the journal each time. Sweeps are seeded (`FLEET_FAULT_SEED`,
//! a fixed default) so that a failing kill point is found again by its number, and bounded so
//! that the suite keeps to its time in CI.
//!
//! Each scenario writes its figures (kill points tried, sites recovered, sites left down, steps
//! repeated, inputs tried, panics) to a file of its own; `make test-faults` prints them as one
//! table after the run (`tests/it/faults/figures.sh`).

mod controller; // SIGKILL of the controller after the N-th journal write, then resume or recover
mod inputs; // bad input: every parser fed generated and mutated documents, and bad files through the binary
mod load; // fleet exec on 1,000 hosts and fleet upgrade of hundreds of sites, a seeded tenth of the hosts failing or hanging
mod network; // hosts and networks failing under upgrade and migrate release: down, killed, mute, silent, hung, cut mid-upload, the bastion dead, silent or back
mod output; // hosts answering with a gigabyte, invalid UTF-8, escape sequences, or waiting on stdin
mod remote; // the hosts' tools failing in every way the fakes can: each host its own failure, one run
mod secrets; // passwords nowhere but in memory (files, output, host process lists, core dumps); backups never where others write
mod shell; // `$(...)`, backquotes and `;` in the inventory's paths and URIs: data on the hosts, or refused

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The seed of every sweep: `FLEET_FAULT_SEED`, else a fixed one (CI runs the same points).
pub(crate) fn seed() -> u64 {
    std::env::var("FLEET_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(20_261_202)
}

/// A small seeded generator (SplitMix64): reproducible points without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, stream: &str) -> Rng {
        // Each scenario draws from its own stream, so adding one never moves another's points.
        let salt = stream.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Rng(seed ^ salt)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// `n` distinct points in `lo..=hi`, spread over it: one drawn in each of `n` equal
    /// strata, so that the start, the middle and the end of a run are all hit.
    pub(crate) fn spread(&mut self, n: u64, lo: u64, hi: u64) -> Vec<u64> {
        let width = (hi - lo + 1).max(n);
        (0..n)
            .map(|i| {
                let a = lo + i * width / n;
                let b = (lo + (i + 1) * width / n).saturating_sub(1).max(a);
                self.range(a, b).min(hi)
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// Figures of one scenario, in the order the table prints them (`sites` counts hosts for the
/// scenarios that have no sites).
#[derive(Debug, Default, Clone)]
pub(crate) struct Figures {
    pub(crate) kill_points: u64,
    pub(crate) sites: u64,
    pub(crate) recovered: u64,
    pub(crate) left_down: u64,
    pub(crate) repeated: u64,
    pub(crate) inputs: u64,
    pub(crate) panics: u64,
}

impl Figures {
    /// Writes them for `make test-faults`'s table (one file per scenario, replaced each run).
    pub(crate) fn save(&self, scenario: &str) {
        let dir = figures_dir();
        std::fs::create_dir_all(&dir).expect("figures dir");
        let mut line = String::new();
        let _ = write!(
            line,
            "{scenario}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.kill_points,
            self.sites,
            self.recovered,
            self.left_down,
            self.repeated,
            self.inputs,
            self.panics
        );
        let file: String = scenario
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        std::fs::write(dir.join(format!("{file}.tsv")), line + "\n").expect("figures");
    }
}

/// Every fact file of every fake database on the hosts, by path: the data a crash must not
/// lose or change. A flushed cache (a marker) and when a migration last imported are not
/// data, and the modules enabled are a set (a module disabled for the upgrade and enabled
/// again comes back last in the list).
pub(crate) fn databases(u: &crate::upgrade::Upgrade) -> BTreeMap<PathBuf, String> {
    let mut t = BTreeMap::new();
    for h in u.lab.hosts() {
        let db = h.root.join("fake-civi/db");
        if db.exists() {
            crate::migrate::tree(&db, &mut t);
        }
    }
    t.retain(|p, _| !p.ends_with("drupal_cache_cleared") && !p.ends_with("last_imported"));
    for (p, v) in t.iter_mut() {
        if p.ends_with("modules_enabled") {
            let mut lines: Vec<&str> = v.lines().collect();
            lines.sort_unstable();
            *v = lines.join("\n");
        }
    }
    t
}

fn figures_dir() -> PathBuf {
    std::env::var_os("FLEET_FAULT_FIGURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-figures"))
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn spread_points_are_distinct_in_range_and_reproducible() {
        let a = Rng::new(7, "x").spread(30, 1, 500);
        let b = Rng::new(7, "x").spread(30, 1, 500);
        assert_eq!(a, b);
        assert_eq!(a.len(), 30);
        assert!(a.iter().all(|p| (1..=500).contains(p)));
        assert!(a[0] <= 17 && a[29] >= 484, "{a:?}");
        assert_ne!(a, Rng::new(8, "x").spread(30, 1, 500));
        assert_ne!(a, Rng::new(7, "y").spread(30, 1, 500));
        // Fewer points available than asked: each once.
        assert_eq!(Rng::new(1, "z").spread(10, 1, 4), vec![1, 2, 3, 4]);
    }
}
