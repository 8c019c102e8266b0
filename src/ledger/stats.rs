//! What the ledger's file holds: rows and bytes per table (indexes counted with their
//! table) and per raw sample, from SQLite's own page accounting (`dbstat`).

use rusqlite::Connection;
use serde::Serialize;

/// One table's share of the file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableStats {
    pub table: String,
    pub rows: u64,
    /// Pages of the table and its indexes, in bytes.
    pub bytes: u64,
    /// `bytes` over the raw samples stored (what each sample costs, all tables counted).
    pub bytes_per_sample: Option<f64>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerStats {
    pub file_bytes: u64,
    /// Pages free inside the file (given back by incremental vacuum, or reused).
    pub free_bytes: u64,
    /// Raw samples stored (in blocks).
    pub samples: u64,
    pub tables: Vec<TableStats>,
}

pub(crate) fn ledger_stats(conn: &Connection) -> rusqlite::Result<LedgerStats> {
    let pragma = |name: &str| -> rusqlite::Result<u64> {
        let value: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    let (page_size, page_count, free_pages) = (pragma("page_size")?, pragma("page_count")?, pragma("freelist_count")?);
    let samples: i64 = conn.query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))?;
    let samples = u64::try_from(samples).unwrap_or(0);
    // Each table with the indexes on it.
    let owners: Vec<(String, String)> = {
        let mut stmt = conn.prepare(
            "SELECT name, tbl_name FROM main.sqlite_schema WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut bytes_of = std::collections::BTreeMap::<String, u64>::new();
    {
        let mut stmt = conn.prepare("SELECT name, sum(pgsize) FROM dbstat('main') GROUP BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (name, bytes) = row?;
            // SQLite's own indexes of UNIQUE constraints: `sqlite_autoindex_<table>_<n>`.
            let auto = name
                .strip_prefix("sqlite_autoindex_")
                .and_then(|rest| rest.rsplit_once('_'))
                .map(|(table, _)| table.to_string());
            let owner = owners
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, table)| table.clone())
                .or(auto)
                .unwrap_or(name);
            *bytes_of.entry(owner).or_default() += u64::try_from(bytes).unwrap_or(0);
        }
    }
    let mut tables = Vec::new();
    for (table, bytes) in bytes_of {
        if !owners.iter().any(|(name, _)| *name == table) {
            continue;
        }
        // A name from sqlite_schema, quoted as an identifier.
        let rows: i64 = conn.query_row(
            &format!("SELECT count(*) FROM \"{}\"", table.replace('"', "\"\"")),
            [],
            |r| r.get(0),
        )?;
        tables.push(TableStats {
            table,
            rows: u64::try_from(rows).unwrap_or(0),
            bytes,
            bytes_per_sample: (samples > 0).then(|| bytes as f64 / samples as f64),
        });
    }
    tables.sort_by_key(|t| std::cmp::Reverse(t.bytes));
    Ok(LedgerStats {
        file_bytes: page_size * page_count,
        free_bytes: page_size * free_pages,
        samples,
        tables,
    })
}

#[cfg(test)]
mod tests {
    use crate::ledger::Ledger;

    #[test]
    fn every_table_is_counted_with_its_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("l.db")).unwrap();
        ledger
            .conn
            .execute_batch("INSERT INTO devices (id, name, first_seen, last_seen) VALUES (1, 'a', 0, 0);")
            .unwrap();
        let stats = ledger.stats().unwrap();
        let devices = stats.tables.iter().find(|t| t.table == "devices").unwrap();
        assert_eq!(devices.rows, 1);
        assert!(
            devices.bytes >= 4096 * 2,
            "the table and its unique indexes: {}",
            devices.bytes
        );
        assert!(stats.tables.iter().all(|t| !t.table.starts_with("sample_blocks_by")));
        assert_eq!(stats.samples, 0);
        assert!(stats.file_bytes >= stats.tables.iter().map(|t| t.bytes).sum::<u64>());
    }
}
