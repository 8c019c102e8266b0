//! Text tables for the terminal: one renderer (comfy-table) for every table the CLI
//! prints. Columns are sized to their content; past 80 columns a cell wraps onto a second
//! line instead of being cut, so two long device names never print the same.

use comfy_table::{presets, Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};

/// The width tables keep to: a classic terminal, an SSH session on a phone.
pub const WIDTH: u16 = 80;

/// A table column: its header, whether its values are numbers (right-aligned), and
/// whether a long value may wrap (names and notes do; numbers and settings never).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub numeric: bool,
    pub wraps: bool,
}

/// Free text (names, notes): left-aligned, wraps when the table is too wide.
pub const fn text(header: &'static str) -> Column {
    Column {
        header,
        numeric: false,
        wraps: true,
    }
}

/// A short value (a time, a setting such as `525/1150`): left-aligned, never wraps.
pub const fn label(header: &'static str) -> Column {
    Column {
        header,
        numeric: false,
        wraps: false,
    }
}

/// A number: right-aligned, never wraps.
pub const fn number(header: &'static str) -> Column {
    Column {
        header,
        numeric: true,
        wraps: false,
    }
}

/// Renders rows under the headers, borderless, at most [`WIDTH`] columns wide; every line
/// ends with a newline and carries no trailing spaces. Cells are printed as given: callers
/// escape miner-supplied text first.
pub fn render(columns: &[Column], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(columns.iter().map(|c| Cell::new(c.header)));
    for row in rows {
        table.add_row(row.iter().map(Cell::new));
    }
    for (index, column) in columns.iter().enumerate() {
        if let Some(table_column) = table.column_mut(index) {
            table_column.set_padding((0, 1));
            table_column.set_constraint(if column.wraps {
                // Never narrower than the header.
                ColumnConstraint::LowerBoundary(Width::Fixed(column.header.chars().count() as u16))
            } else {
                ColumnConstraint::ContentWidth
            });
            if column.numeric {
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

    #[test]
    fn long_names_wrap_instead_of_looking_the_same() {
        let rows: Vec<Vec<String>> = (1..=3)
            .map(|i| {
                vec![
                    format!("gamma-living-room-shelf-number-{i}-next-to-the-window"),
                    "525/1150".into(),
                    "1075.8 ±10.2".into(),
                    "17.06".into(),
                    "a note that is rather long and goes on".into(),
                ]
            })
            .collect();
        let columns = [
            text("DEVICE"),
            text("MHZ/MV"),
            number("GH/S ±95%"),
            number("J/TH"),
            text("NOTE"),
        ];
        let table = render(&columns, &rows);
        for line in table.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
        }
        // Each name is whole across its two lines: the first column of a row and of its
        // continuation line put together.
        let lines: Vec<&str> = table.lines().collect();
        for i in 1..=3 {
            let (row, continuation) = (lines[2 * i - 1], lines[2 * i]);
            let name = format!(
                "{}{}",
                row.split_whitespace().next().unwrap(),
                continuation.split_whitespace().next().unwrap()
            );
            assert_eq!(
                name,
                format!("gamma-living-room-shelf-number-{i}-next-to-the-window"),
                "{table}"
            );
        }
        // Numbers are right-aligned under their header.
        let header = table.lines().next().unwrap();
        let first = table.lines().nth(1).unwrap();
        assert!(header.starts_with("DEVICE"), "{table}");
        let jth_end = header.find("J/TH").unwrap() + 4;
        assert_eq!(first.get(jth_end - 5..jth_end), Some("17.06"), "{table}");
    }
}
