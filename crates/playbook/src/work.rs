//! A site a host job works on, with what discovery found.

use fleet_inventory::Site;

use crate::discovery::Facts;

/// A site this host will work on, with what discovery found.
#[derive(Clone)]
pub(crate) struct Work<'a> {
    pub(crate) site: &'a Site,
    pub(crate) facts: Facts,
    /// The earlier run that left this site in maintenance and whose journal holds its true
    /// prior state (`facts.maintenance` then is that state, not the live `1`).
    pub(crate) prior_from: Option<String>,
}
