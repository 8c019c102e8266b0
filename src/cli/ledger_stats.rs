//! `analyze ledger-stats`: what the ledger's file holds, table by table.

use super::output::{emit, print_json, ListFormat};
use super::settings::ledger_failure;
use super::Failure;
use crate::ledger::Ledger;

/// `analyze ledger-stats`: rows, bytes and bytes per raw sample of each table.
pub(super) fn ledger_stats(ledger: &Ledger, format: ListFormat) -> Result<(), Failure> {
    use super::table::{key, number};
    let stats = ledger.stats().map_err(ledger_failure)?;
    if format == ListFormat::Json {
        return print_json(&stats);
    }
    let columns = [key("TABLE"), number("ROWS"), number("BYTES"), number("BYTES/SAMPLE")];
    let mut rows: Vec<Vec<String>> = stats
        .tables
        .iter()
        .map(|t| {
            vec![
                t.table.clone(),
                t.rows.to_string(),
                t.bytes.to_string(),
                t.bytes_per_sample.map_or("-".into(), |b| format!("{b:.1}")),
            ]
        })
        .collect();
    let per_sample = |bytes: u64| {
        if stats.samples > 0 {
            format!("{:.1}", bytes as f64 / stats.samples as f64)
        } else {
            "-".into()
        }
    };
    rows.push(vec![
        "(free pages)".into(),
        String::new(),
        stats.free_bytes.to_string(),
        String::new(),
    ]);
    rows.push(vec![
        "(whole file)".into(),
        stats.samples.to_string(),
        stats.file_bytes.to_string(),
        per_sample(stats.file_bytes),
    ]);
    let mut out = super::table::render(&columns, &rows);
    out.push_str(&format!(
        "{} raw samples; the whole file's rows column counts them\n",
        stats.samples
    ));
    emit(&out)
}
