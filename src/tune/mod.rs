//! `tune`: guided sweeps over frequency × core voltage that a careful engineer would trust
//! with their own hardware. `prepare` reads a miner and fixes its candidates before
//! anything is sent, `plan` picks the configurations, `limits` (with the board facts of `axeos::boards`) stops a
//! step the moment a reading breaks one, `measure` decides when a step has measured enough
//! and whether it was healthy, `sweep` drives one miner through its plan, and `restore`
//! always leaves it on the chosen or the original settings, read back. The ledger (`ledger::tune`)
//! holds each run's restore plan before the first write, so a crash can be undone with
//! `tune restore`.

pub mod limits;
pub mod measure;
pub mod plan;
pub mod prepare;
pub mod restore;
pub mod sweep;
