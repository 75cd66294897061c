//! Deciding what to do, and doing it. Pure files (they import only `model`, no I/O, no clock):
//! `diff` compares a revision's desired state with what the store remembers; `plan` is the
//! readiness-gated planner; `decide` wraps it into a whole pass (what to persist, the
//! revision's settlement, the probes to run); `rollback` judges a revision that failed;
//! `readiness` and `views` hold the rules they share
//! (restart backoff lives in `model::backoff`). Effectful files: `controller` (the loop: observe → decide → persist → execute),
//! `mirror` (its copy of the store, re-reading only what changed) and `executor` (runs the
//! planned actions on the runtimes, deciding nothing).

pub mod controller;
pub mod decide;
pub mod diff;
pub mod executor;
pub mod mirror;
pub mod plan;
pub mod readiness;
pub mod rollback;
pub mod views;

#[cfg(test)]
mod cron_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod plan_props;
#[cfg(test)]
mod plan_tests;
