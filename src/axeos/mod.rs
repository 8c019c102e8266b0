//! Talking to a miner: the HTTP client (`GET /api/system/info`, `/api/system/asic`,
//! `PATCH /api/system`), the pure decoder of every firmware era's body into a [`Sample`],
//! the plausibility windows and escaping of what a miner sends (`untrusted`), and the
//! window every write passes.

pub mod address;
pub mod apply;
pub mod boards;
mod client;
pub mod discover;
pub mod facts;
pub mod family;
pub mod history;
pub mod sample;
mod untrusted;
pub mod window;

pub use client::*;
pub use sample::{Identity, Sample};
pub use untrusted::{printable, PLAUSIBLE};
pub use window::SettingsPatch;
