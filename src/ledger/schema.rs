//! The ledger's schema: one migration per version, applied in order and never edited.

/// The schema, one entry per version. Never edit or reorder an entry; append a new one.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: devices, segments with running aggregates, samples, sessions, events.
    "CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        mac TEXT UNIQUE,
        hostname TEXT,
        asic_model TEXT,
        board_version TEXT,
        firmware TEXT,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE TABLE segments (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        started_at REAL NOT NULL,
        ended_at REAL NOT NULL,
        reason TEXT NOT NULL,
        frequency_mhz REAL,
        core_voltage_mv REAL,
        firmware TEXT,
        samples INTEGER NOT NULL DEFAULT 0,
        last_uptime INTEGER,
        warmup_seconds REAL NOT NULL,
        steady TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX segments_by_device ON segments(device_id, started_at);
    CREATE TABLE samples (
        device_id INTEGER NOT NULL REFERENCES devices(id),
        t REAL NOT NULL,
        segment_id INTEGER NOT NULL REFERENCES segments(id),
        dt REAL NOT NULL,
        hashrate_ghs REAL,
        expected_ghs REAL,
        power_w REAL,
        asic_temp_c REAL,
        vr_temp_c REAL,
        frequency_mhz REAL,
        core_voltage_mv REAL,
        core_voltage_measured_mv REAL,
        input_voltage_v REAL,
        input_current_a REAL,
        fan_percent REAL,
        fan_rpm REAL,
        shares_accepted INTEGER,
        shares_rejected INTEGER,
        error_percent REAL,
        uptime_s INTEGER,
        best_difficulty REAL,
        PRIMARY KEY (device_id, t)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        started_at REAL NOT NULL,
        ended_at REAL,
        target_frequency_mhz REAL,
        target_core_voltage_mv REAL,
        notes TEXT NOT NULL DEFAULT '',
        end_notes TEXT NOT NULL DEFAULT '',
        applied INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX sessions_one_open_per_device ON sessions(device_id) WHERE ended_at IS NULL;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL REFERENCES devices(id),
        t REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_by_device ON events(device_id, t);",
    // 2: the names a device has been polled under, so a renamed device is found by either.
    "CREATE TABLE device_names (
        device_id INTEGER NOT NULL REFERENCES devices(id),
        name TEXT NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (device_id, name)
    );
    INSERT INTO device_names (device_id, name, first_seen) SELECT id, name, first_seen FROM devices;",
    // 3: tuning sweeps. A run's restore plan (each device's settings before the first
    // PATCH) is written before anything is sent; every step is a session tagged with the run.
    "CREATE TABLE tune_runs (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT NOT NULL,
        pid INTEGER NOT NULL,
        process_start INTEGER,
        spec TEXT NOT NULL
    );
    CREATE TABLE tune_devices (
        run_id INTEGER NOT NULL REFERENCES tune_runs(id),
        device_id INTEGER NOT NULL REFERENCES devices(id),
        original_frequency_mhz REAL,
        original_core_voltage_mv REAL,
        status TEXT NOT NULL,
        final_frequency_mhz REAL,
        final_core_voltage_mv REAL,
        note TEXT NOT NULL DEFAULT '',
        plan TEXT,
        PRIMARY KEY (run_id, device_id)
    );
    CREATE TABLE tune_steps (
        run_id INTEGER NOT NULL REFERENCES tune_runs(id),
        device_id INTEGER NOT NULL REFERENCES devices(id),
        step INTEGER NOT NULL,
        frequency_mhz REAL NOT NULL,
        core_voltage_mv REAL NOT NULL,
        session_id INTEGER REFERENCES sessions(id),
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        result TEXT,
        PRIMARY KEY (run_id, device_id, step)
    );
    ALTER TABLE sessions ADD COLUMN tune_run_id INTEGER REFERENCES tune_runs(id);",
    // 4: hourly rollups of the charted readings (`rollup.rs` keeps them; the migration
    // fills them from the samples already stored).
    "CREATE TABLE sample_hours (
        device_id INTEGER NOT NULL REFERENCES devices(id),
        hour REAL NOT NULL,
        samples INTEGER NOT NULL,
        hashrate_n INTEGER NOT NULL, hashrate_sum REAL NOT NULL, hashrate_min REAL, hashrate_max REAL,
        expected_n INTEGER NOT NULL, expected_sum REAL NOT NULL, expected_min REAL, expected_max REAL,
        power_n INTEGER NOT NULL, power_sum REAL NOT NULL, power_min REAL, power_max REAL,
        asic_n INTEGER NOT NULL, asic_sum REAL NOT NULL, asic_min REAL, asic_max REAL,
        vr_n INTEGER NOT NULL, vr_sum REAL NOT NULL, vr_min REAL, vr_max REAL,
        fan_pct_n INTEGER NOT NULL, fan_pct_sum REAL NOT NULL, fan_pct_min REAL, fan_pct_max REAL,
        fan_rpm_n INTEGER NOT NULL, fan_rpm_sum REAL NOT NULL, fan_rpm_min REAL, fan_rpm_max REAL,
        eff_power_sum REAL NOT NULL,
        eff_hashrate_sum REAL NOT NULL,
        PRIMARY KEY (device_id, hour)
    ) WITHOUT ROWID;",
    // 5: where a sample came from (0 a poll, 1 the miner's own statistics ring, filling a
    // hole), and the miner's log tail kept with an incident's event.
    "ALTER TABLE samples ADD COLUMN source INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN log_tail TEXT;",
    // 6: raw samples packed into blocks (`blocks.rs`, `store.rs`): about a fifth of the bytes
    // of a row of REAL columns. The migration moves the rows into blocks and drops the table.
    "CREATE TABLE sample_blocks (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL,
        segment_id INTEGER NOT NULL,
        t_first REAL NOT NULL,
        t_last REAL NOT NULL,
        samples INTEGER NOT NULL,
        backfilled INTEGER NOT NULL DEFAULT 0,
        data BLOB NOT NULL
    );
    CREATE INDEX sample_blocks_by_device ON sample_blocks(device_id, t_first);",
];

/// Temporary objects (this connection's only: nothing is written to the file) under which
/// this build's reads run on a ledger of an older schema `found`, as if it were migrated:
/// what a later migration adds is empty (sweeps) or computed from what is there (device
/// names, hourly rollups). A read-only command thus reads an old ledger without upgrading
/// it; only `serve` and the commands that record migrate.
pub(crate) fn read_compatibility(found: usize) -> String {
    let mut sql = String::new();
    if found < 2 {
        sql.push_str(
            "CREATE TEMP VIEW device_names (device_id, name, first_seen) AS
                 SELECT id, name, first_seen FROM main.devices;",
        );
    }
    if found < 3 {
        sql.push_str(
            "CREATE TEMP TABLE tune_runs (
                id INTEGER PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL, status TEXT NOT NULL,
                pid INTEGER NOT NULL, process_start INTEGER, spec TEXT NOT NULL);
             CREATE TEMP TABLE tune_devices (
                run_id INTEGER NOT NULL, device_id INTEGER NOT NULL, original_frequency_mhz REAL,
                original_core_voltage_mv REAL, status TEXT NOT NULL, final_frequency_mhz REAL,
                final_core_voltage_mv REAL, note TEXT NOT NULL DEFAULT '', plan TEXT);
             CREATE TEMP TABLE tune_steps (
                run_id INTEGER NOT NULL, device_id INTEGER NOT NULL, step INTEGER NOT NULL,
                frequency_mhz REAL NOT NULL, core_voltage_mv REAL NOT NULL, session_id INTEGER,
                outcome TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', result TEXT);
             CREATE TEMP VIEW sessions AS SELECT *, NULL AS tune_run_id FROM main.sessions;",
        );
    }
    if found < 5 {
        sql.push_str(
            "CREATE TEMP VIEW samples AS SELECT *, 0 AS source FROM main.samples;
             CREATE TEMP VIEW events AS SELECT *, NULL AS log_tail FROM main.events;",
        );
    }
    if found < crate::ledger::store::BLOCKS_SCHEMA_VERSION {
        // The migration's own table, as a temporary one; filled from the rows by
        // [`crate::ledger::store::blocks_from_rows`] once this runs.
        sql.push_str(
            &MIGRATIONS[crate::ledger::store::BLOCKS_SCHEMA_VERSION - 1]
                .replace("CREATE TABLE ", "CREATE TEMP TABLE ")
                .replace("CREATE INDEX ", "CREATE INDEX temp."),
        );
    }
    if found < crate::ledger::rollup::ROLLUP_SCHEMA_VERSION {
        sql.push_str(&crate::ledger::rollup::hours_view());
    }
    sql
}

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();
