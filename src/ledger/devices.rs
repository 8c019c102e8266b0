//! Device identity: by MAC address when the firmware reports one (a rename or a new IP
//! keeps the history), by configured name otherwise, with MAC conflicts kept apart.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::axeos::sample::Identity;

/// Finds or creates the device row a poll of `name` belongs to. With a MAC, the MAC decides
/// (a rename or a new IP keeps the history) — unless the device with that MAC is configured
/// under another name (`polled_elsewhere`): two miners claiming one MAC are kept apart by
/// name. A new MAC at a name whose device has another one is believed (a swapped unit,
/// a new device) only when `allow_new_mac` says it persisted; until then the sample stays
/// with the name's device and the MAC is reported as a conflict.
pub(crate) fn resolve_device(
    tx: &Transaction,
    name: &str,
    identity: &Identity,
    t: f64,
    polled_elsewhere: &dyn Fn(&str) -> bool,
    allow_new_mac: bool,
) -> rusqlite::Result<Resolved> {
    let mut mac_conflict = false;
    let by_name = |tx: &Transaction| -> rusqlite::Result<Option<(i64, Option<String>)>> {
        tx.query_row("SELECT id, mac FROM devices WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
    };
    let (id, bound_mac) = match &identity.mac {
        Some(mac) => {
            let by_mac: Option<(i64, String)> = tx
                .query_row("SELECT id, name FROM devices WHERE mac = ?1", [mac], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            match by_mac {
                Some((_, other)) if other != name && polled_elsewhere(&other) => {
                    mac_conflict = true;
                    match by_name(tx)? {
                        Some(row) => row,
                        None => (insert_device(tx, name, None, t)?, None),
                    }
                }
                Some((id, old_name)) => {
                    if old_name != name {
                        free_name(tx, name, id)?;
                        tx.execute("UPDATE devices SET name = ?1 WHERE id = ?2", params![name, id])?;
                    }
                    (id, Some(mac.clone()))
                }
                None => match by_name(tx)? {
                    Some((id, None)) => {
                        tx.execute("UPDATE devices SET mac = ?1 WHERE id = ?2", params![mac, id])?;
                        (id, Some(mac.clone()))
                    }
                    Some((id, Some(other_mac))) if !allow_new_mac => {
                        mac_conflict = true;
                        (id, Some(other_mac))
                    }
                    _ => {
                        // Another miner now answers at this name: keep the old one's history
                        // under a name that says which.
                        free_name(tx, name, -1)?;
                        (insert_device(tx, name, Some(mac), t)?, Some(mac.clone()))
                    }
                },
            }
        }
        None => match by_name(tx)? {
            Some(row) => row,
            None => (insert_device(tx, name, None, t)?, None),
        },
    };
    tx.execute(
        "UPDATE devices SET hostname = coalesce(?1, hostname), asic_model = coalesce(?2, asic_model),
         board_version = coalesce(?3, board_version), firmware = coalesce(?4, firmware), last_seen = max(last_seen, ?5)
         WHERE id = ?6",
        params![
            identity.hostname,
            identity.asic_model,
            identity.board_version,
            identity.firmware,
            t,
            id
        ],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO device_names (device_id, name, first_seen) VALUES (?1, ?2, ?3)",
        params![id, name, t],
    )?;
    Ok(Resolved {
        id,
        mac_conflict,
        bound_mac,
    })
}

/// The device a poll belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub id: i64,
    /// The MAC the miner reported belongs to a device configured under another name, or is
    /// not (yet) believed to be a new miner at this name.
    pub mac_conflict: bool,
    /// The MAC of the device row the sample went to.
    pub bound_mac: Option<String>,
}

/// The device row for a name with no poll yet (an event of a device never reached).
pub(crate) fn device_by_name_or_new(tx: &Transaction, name: &str, t: f64) -> rusqlite::Result<i64> {
    match tx
        .query_row("SELECT id FROM devices WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
    {
        Some(id) => Ok(id),
        None => {
            let id = insert_device(tx, name, None, t)?;
            tx.execute(
                "INSERT OR IGNORE INTO device_names (device_id, name, first_seen) VALUES (?1, ?2, ?3)",
                params![id, name, t],
            )?;
            Ok(id)
        }
    }
}

pub(crate) fn insert_device(tx: &Transaction, name: &str, mac: Option<&str>, t: f64) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO devices (name, mac, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)",
        params![name, mac, t],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Renames whichever other device holds `name` to `name (MAC)`.
pub(crate) fn free_name(tx: &Transaction, name: &str, except: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE devices SET name = name || ' (' || coalesce(mac, 'id ' || id) || ')' WHERE name = ?1 AND id != ?2",
        params![name, except],
    )?;
    Ok(())
}

/// A device row as the CLI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub id: i64,
    pub name: String,
    pub mac: Option<String>,
    pub asic_model: Option<String>,
    pub firmware: Option<String>,
    pub first_seen: f64,
    pub last_seen: f64,
}

/// `last_seen` is the device's newest stored sample (its newest block's end): the devices
/// row is written only when the identity is resolved, not at every poll.
const DEVICE_COLUMNS: &str = "d.id, d.name, d.mac, d.asic_model, d.firmware, d.first_seen,
    max(d.last_seen, coalesce((SELECT b.t_last FROM sample_blocks b WHERE b.device_id = d.id
                               ORDER BY b.t_first DESC LIMIT 1), d.last_seen))";

fn device_from_row(r: &rusqlite::Row) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        id: r.get(0)?,
        name: r.get(1)?,
        mac: r.get(2)?,
        asic_model: r.get(3)?,
        firmware: r.get(4)?,
        first_seen: r.get(5)?,
        last_seen: r.get(6)?,
    })
}

pub(crate) fn devices(conn: &Connection) -> rusqlite::Result<Vec<DeviceRow>> {
    let mut stmt = conn.prepare(&format!("SELECT {DEVICE_COLUMNS} FROM devices d ORDER BY d.name"))?;
    let rows = stmt.query_map([], device_from_row)?;
    rows.collect()
}

/// A device by its current name, or by a name it was polled under before.
pub(crate) fn find_device(conn: &Connection, name: &str) -> rusqlite::Result<Option<DeviceRow>> {
    conn.query_row(
        &format!(
            "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.name = ?1
             UNION ALL
             SELECT {DEVICE_COLUMNS} FROM device_names n JOIN devices d ON d.id = n.device_id WHERE n.name = ?1
             LIMIT 1"
        ),
        [name],
        device_from_row,
    )
    .optional()
}
