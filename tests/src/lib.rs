//! placeholder
pub mod vcsim;
pub mod vddk;
