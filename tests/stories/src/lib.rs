//! User stories live in `tests/`: one file per story, each starting the real components
//! through the `sluice-tests` harness.
