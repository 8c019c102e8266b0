//! `tune`: guided sweeps over frequency × core voltage that a careful engineer would trust
//! with their own hardware. `spec` is what a sweep was asked to do, `prepare` reads a
//! miner and fixes its candidates before anything is sent, `plan` picks the configurations,
//! `limits` (with the board facts of `axeos::boards`) stops a step the moment a reading
//! breaks one, `measure` decides when a step has measured enough and whether it was
//! healthy, `sweep` drives one miner through its plan and `report` says how each step and
//! each device came out, and `restore` always leaves it on the chosen or the original
//! settings, read back. `run` takes a whole run from start to end (and resumes or restores
//! an interrupted one); `runs` is the ledger's view of the runs. The ledger
//! (`ledger::tune`) holds each run's restore plan before the first write, so a crash can
//! be undone with `tune restore`.

pub mod limits;
pub mod measure;
pub mod plan;
pub mod prepare;
pub mod report;
pub mod restore;
pub mod run;
pub mod runs;
pub mod spec;
pub mod sweep;
