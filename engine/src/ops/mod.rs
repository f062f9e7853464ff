//! Operations as library calls: each takes an options struct and returns
//! a report that derives `serde::Serialize`, so the CLI, a job runner and
//! the tests call them alike. The CLI only parses arguments and prints.

pub mod backup;
pub mod forget;
