//! Deciding what to do. The files here are pure (they import only `model`): `diff` compares a
//! revision's desired state with what the store remembers. The readiness-gated planner joins
//! them.

pub mod backoff;
pub mod controller;
pub mod diff;
pub mod executor;
pub mod plan;
pub mod readiness;
pub mod views;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod plan_props;
#[cfg(test)]
mod plan_tests;
