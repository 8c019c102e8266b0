//! Talking to a miner: the HTTP client (`GET /api/system/info`, `/api/system/asic`,
//! `PATCH /api/system`), the pure decoder of every firmware era's body into a [`Sample`],
//! and the plausibility window every write passes.

mod client;
pub mod sample;
pub mod window;

pub use client::*;
pub use sample::{Identity, Sample};
