//! What is being done to a device now, in a few words for the fleet page's badge: a tuning
//! sweep's step, or an open session.

use std::collections::BTreeMap;

use crate::ledger::{self, Ledger};

/// The longest session note shown in a badge (the session page has all of it).
const NOTE_CHARS: usize = 24;

/// Per device name: "tuning: sweep #R, step K" while a sweep's step runs on it, else
/// "session: NOTES" (or "session #N") while a session is open.
pub fn device_activities(ledger: &Ledger) -> ledger::Result<BTreeMap<String, String>> {
    let mut activities = BTreeMap::new();
    let mut steps_done: BTreeMap<i64, Vec<ledger::tune::TuneStep>> = BTreeMap::new();
    for session in ledger.sessions(None)?.into_iter().filter(|s| s.ended_at.is_none()) {
        let text = match session.tune_run_id {
            Some(run) => {
                if let std::collections::btree_map::Entry::Vacant(slot) = steps_done.entry(run) {
                    slot.insert(ledger.tune_steps(run)?);
                }
                let device_id = ledger.find_device(&session.device)?.map(|d| d.id);
                let done = steps_done.get(&run).map_or(0, |steps| {
                    steps.iter().filter(|s| Some(s.device_id) == device_id).count()
                });
                format!("tuning: sweep #{run}, step {}", done + 1)
            }
            None if session.notes.trim().is_empty() => format!("session #{}", session.id),
            None => {
                let notes = session.notes.trim();
                match notes.char_indices().nth(NOTE_CHARS) {
                    Some((at, _)) => format!("session: {}…", &notes[..at]),
                    None => format!("session: {notes}"),
                }
            }
        };
        activities.insert(session.device, text);
    }
    Ok(activities)
}
