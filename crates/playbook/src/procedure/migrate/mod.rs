//! `fleet migrate`: a major Drupal upgrade done as a new site built beside the old one (a
//! new release directory, a new database, the data imported with Drupal's Migrate API),
//! QA-gated, then switched in by replacing the `current` symlink the web server serves,
//! with the old release and database kept for the way back.

pub(crate) mod discovery;
pub(crate) mod manifest;
pub(crate) mod plan;
