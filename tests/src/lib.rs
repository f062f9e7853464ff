//! placeholder
pub mod cli;
pub mod vcsim;
pub mod vddk;
