//! Text tables for the terminal: one renderer (comfy-table) for every table the CLI
//! prints, and the rule for how wide it may be (the terminal's width when standard output
//! is a terminal, unbounded through a pipe or into a file). The key column (a device name,
//! an id) is never wrapped nor cut; only free text (notes, reasons, verdicts) wraps, and
//! only when the terminal is too narrow for it.

use std::io::IsTerminal as _;

use comfy_table::{presets, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};

/// The width used when standard output is a terminal whose size cannot be read.
pub const FALLBACK_WIDTH: u16 = 80;

/// The narrowest a free-text column gets, in characters.
pub const MIN_TEXT_WIDTH: u16 = 16;

/// How wide a table may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// A terminal this many columns wide: free text wraps to stay within it.
    Columns(u16),
    /// A pipe or a file: every cell on one line, however long.
    Unbounded,
}

/// What a column holds, which decides its alignment and whether it may wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What identifies the row (a device name, an id): whole, on one line, always.
    Key,
    /// Free text (notes, reasons, verdicts): the only kind that wraps.
    Text,
    /// A short value (a time, a setting such as `525/1150`, an address): one line.
    Label,
    /// A number: right-aligned, one line.
    Number,
}

/// A table column: its header and what it holds.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub kind: Kind,
}

/// The row's key (device or miner name, table name): never wrapped, never cut.
pub const fn key(header: &'static str) -> Column {
    Column {
        header,
        kind: Kind::Key,
    }
}

/// Free text (notes, reasons, verdicts): left-aligned, wraps when the terminal is too narrow.
pub const fn text(header: &'static str) -> Column {
    Column {
        header,
        kind: Kind::Text,
    }
}

/// A short value (a time, a setting such as `525/1150`): left-aligned, never wraps.
pub const fn label(header: &'static str) -> Column {
    Column {
        header,
        kind: Kind::Label,
    }
}

/// A number: right-aligned, never wraps.
pub const fn number(header: &'static str) -> Column {
    Column {
        header,
        kind: Kind::Number,
    }
}

/// The width tables printed now may take: see [`fit_for`].
pub fn output_fit() -> Fit {
    let stdout_is_terminal = std::io::stdout().is_terminal();
    fit_for(
        stdout_is_terminal,
        std::env::var("COLUMNS").ok().as_deref(),
        // Asked only for a terminal: through a pipe the size of some other terminal
        // (crossterm reads /dev/tty) says nothing about where the text goes.
        || ratatui::crossterm::terminal::size().ok().map(|(columns, _)| columns),
    )
}

/// The rule: through a pipe or into a file, unbounded (a later `grep`, `less -S` or
/// spreadsheet wants whole lines); on a terminal, `COLUMNS` when it holds a positive number
/// (the user's or the shell's explicit word), else the terminal's own width, else
/// [`FALLBACK_WIDTH`].
pub fn fit_for(
    stdout_is_terminal: bool,
    columns_env: Option<&str>,
    terminal_width: impl FnOnce() -> Option<u16>,
) -> Fit {
    if !stdout_is_terminal {
        return Fit::Unbounded;
    }
    let from_env = columns_env
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c > 0);
    Fit::Columns(
        from_env
            .or_else(|| terminal_width().filter(|c| *c > 0))
            .unwrap_or(FALLBACK_WIDTH),
    )
}

/// Renders rows under the headers, borderless, as wide as standard output allows
/// ([`output_fit`]); every line ends with a newline and carries no trailing spaces. Cells
/// are printed as given: callers escape miner-supplied text first.
pub fn render(columns: &[Column], rows: &[Vec<String>]) -> String {
    render_to(output_fit(), columns, rows)
}

/// [`render`] at a given width.
pub fn render_to(fit: Fit, columns: &[Column], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(columns.iter().map(|c| Cell::new(c.header)));
    match fit {
        Fit::Columns(width) => {
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(width);
        }
        Fit::Unbounded => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    for row in rows {
        table.add_row(row.iter().map(Cell::new));
    }
    for (index, column) in columns.iter().enumerate() {
        if let Some(table_column) = table.column_mut(index) {
            table_column.set_padding((0, 1));
            table_column.set_constraint(match column.kind {
                // Never narrower than its header or a few words, so a terminal too narrow
                // for the other columns folds the line rather than stacking a note one
                // syllable a line; wider when the terminal has the room. Comfy-table's
                // widths count the padding.
                Kind::Text => ColumnConstraint::LowerBoundary(Width::Fixed(
                    (column.header.chars().count() as u16).max(MIN_TEXT_WIDTH) + 1,
                )),
                // As wide as the longest value: a name wider than a narrow terminal makes
                // the line longer than the screen (the terminal folds it) rather than
                // printing a name nobody can copy.
                Kind::Key | Kind::Label | Kind::Number => ColumnConstraint::ContentWidth,
            });
            if column.kind == Kind::Number {
                table_column.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three miners with 32-character names, a setting, numbers and a long note.
    fn fleet(note: &str) -> Vec<Vec<String>> {
        (1..=3)
            .map(|i| {
                vec![
                    format!("gamma-living-room-shelf-number-{i}"),
                    "525/1150".into(),
                    "1075.8 ±10.2".into(),
                    "17.06".into(),
                    note.into(),
                ]
            })
            .collect()
    }

    const COLUMNS: [Column; 5] = [
        key("DEVICE"),
        label("MHZ/MV"),
        number("GH/S ±95%"),
        number("J/TH"),
        text("NOTE"),
    ];

    const NOTE: &str = "rejected: the error rate rose above the limit at this voltage, try more millivolts";

    #[test]
    fn names_are_whole_on_one_line_at_80_and_200_columns_and_through_a_pipe() {
        for fit in [Fit::Columns(80), Fit::Columns(200), Fit::Unbounded] {
            let table = render_to(fit, &COLUMNS, &fleet(NOTE));
            for i in 1..=3 {
                let name = format!("gamma-living-room-shelf-number-{i}");
                assert_eq!(name.len(), 32);
                let line = table
                    .lines()
                    .find(|l| l.contains(&name))
                    .unwrap_or_else(|| panic!("{name} not whole on one line at {fit:?}:\n{table}"));
                assert!(line.starts_with(&name), "{fit:?}:\n{table}");
            }
            // No line holds a piece of a name (a wrapped key): the key column of a
            // continuation line is blank.
            for line in table.lines() {
                assert!(
                    line.starts_with("DEVICE ")
                        || line.starts_with("gamma-living-room-shelf-number-")
                        || line.starts_with(&" ".repeat(33)),
                    "{fit:?}: a name split across lines:\n{table}"
                );
            }
            assert!(table.lines().all(|l| l == l.trim_end()), "trailing spaces:\n{table}");
        }
    }

    #[test]
    fn free_text_wraps_only_when_the_terminal_is_too_narrow() {
        let narrow = render_to(Fit::Columns(80), &COLUMNS, &fleet(NOTE));
        for line in narrow.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
        }
        // Header and three rows, each note on more than one line.
        assert!(narrow.lines().count() > 4, "{narrow}");
        assert!(!narrow.contains(NOTE), "{narrow}");
        for wide in [Fit::Columns(200), Fit::Unbounded] {
            let table = render_to(wide, &COLUMNS, &fleet(NOTE));
            assert_eq!(table.lines().count(), 4, "{wide:?}:\n{table}");
            assert_eq!(table.matches(NOTE).count(), 3, "{wide:?}:\n{table}");
        }
    }

    #[test]
    fn a_terminal_too_narrow_keeps_the_note_readable() {
        // 60 columns: the key and numbers take 61, the note keeps a few words a line.
        let table = render_to(Fit::Columns(60), &COLUMNS, &fleet(NOTE));
        assert!(table.lines().next().is_some_and(|h| h.ends_with(" NOTE")), "{table}");
        assert!(table.contains("error rate rose"), "{table}");
        for line in table.lines() {
            let note: String = line.chars().skip(61).collect();
            assert!(note.chars().count() <= usize::from(MIN_TEXT_WIDTH), "{table}");
        }
    }

    #[test]
    fn a_pipe_is_unbounded_even_past_any_terminal() {
        let long = "word ".repeat(80);
        let table = render_to(Fit::Unbounded, &COLUMNS, &fleet(long.trim()));
        assert_eq!(table.lines().count(), 4, "{table}");
        assert!(table.lines().nth(1).is_some_and(|l| l.chars().count() > 400));
    }

    #[test]
    fn numbers_are_right_aligned_under_their_header() {
        let table = render_to(Fit::Columns(200), &COLUMNS, &fleet("ok"));
        let header = table.lines().next().unwrap_or_default();
        let first = table.lines().nth(1).unwrap_or_default();
        assert!(header.starts_with("DEVICE"), "{table}");
        let jth_end = header.find("J/TH").unwrap() + 4;
        assert_eq!(first.get(jth_end - 5..jth_end), Some("17.06"), "{table}");
    }

    #[test]
    fn the_width_is_the_terminals_or_columns_and_unbounded_through_a_pipe() {
        assert_eq!(fit_for(false, Some("80"), || Some(120)), Fit::Unbounded);
        assert_eq!(fit_for(true, None, || Some(120)), Fit::Columns(120));
        assert_eq!(fit_for(true, Some("200"), || Some(120)), Fit::Columns(200));
        assert_eq!(fit_for(true, Some("wide"), || Some(120)), Fit::Columns(120));
        assert_eq!(fit_for(true, Some("0"), || None), Fit::Columns(FALLBACK_WIDTH));
    }
}
