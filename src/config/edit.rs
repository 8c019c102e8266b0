//! Writing config text: one YAML string writer for every config this tool writes, and
//! `discover --add-to`'s edit of an existing file that keeps its comments, order, line
//! endings and byte-order mark, and is checked to change nothing but the devices it adds.

use super::{parse_with, Config, ConfigError, DeviceConfig, MinerAddress, Secrets};

/// A device entry to add to a config file's text.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    pub name: String,
    /// `host` or `host:port`.
    pub ip: String,
    /// What it is, written after the entry as a YAML comment (one line, no control
    /// characters).
    pub note: String,
}

/// Why a config's text could not take the new devices. Nothing was written: the caller
/// still has the file as it was.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The `devices:` value is in a form the edit does not rewrite (an anchor, an alias, a
    /// tag, an unterminated flow list…).
    #[error("its `devices:` list is written as {0}, which this edit does not rewrite")]
    Unsupported(String),
    /// The file as it is does not load.
    #[error("it does not load as it is: {0}")]
    Original(ConfigError),
    /// The edited text would not load.
    #[error("the edited config would not load ({0})")]
    Invalid(ConfigError),
    /// The edited text loads, but says something else than the old one plus the new
    /// devices: the edit would have lost or changed something.
    #[error("the edited config would not keep its devices and settings exactly as they are")]
    Changed,
}

/// A YAML double-quoted scalar: any name, address or path stays one string, whatever it
/// holds (the config writers of `demo`, `simulate --write-config` and `discover --add-to`).
pub fn yaml_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` (a config file that loads) with `devices` added to its `devices:` list, checked:
/// the result must load, and load as the old config with exactly these devices appended —
/// so an edit that would lose or change anything is refused instead of written.
pub fn add_devices_to_config(text: &str, devices: &[NewDevice]) -> Result<String, EditError> {
    let edited = add_devices_to_text(text, devices)?;
    check_edit(text, &edited, devices)?;
    Ok(edited)
}

/// The config `text` says, to add devices to: as [`super::parse`] reads it (passwords
/// not read: the edit sends nothing to a miner, and may run where they cannot be read), or — when its only
/// fault is that it lists no device yet (an empty file, `devices: []`) — with no devices.
pub fn parse_for_adding(text: &str) -> Result<Config, ConfigError> {
    let error = match parse_with(text, Secrets::Skip) {
        Ok(config) => return Ok(config),
        Err(error) => error,
    };
    let probe = [NewDevice {
        name: "probe".into(),
        ip: "192.0.2.1".into(),
        note: String::new(),
    }];
    let Ok(with_probe) = add_devices_to_text(text, &probe) else {
        return Err(error);
    };
    match parse_with(&with_probe, Secrets::Skip) {
        Ok(mut config) if config.devices.len() == 1 => {
            config.devices.clear();
            Ok(config)
        }
        Ok(_) => Err(error),
        // Faults beside the missing devices: the file's own errors say them with their
        // lines (the probe text's lines are not the file's), less the one `--add-to` mends.
        Err(_) => {
            let beside: Vec<ConfigError> = error
                .all()
                .filter(|e| e.key != "devices")
                .map(|e| ConfigError {
                    also: Vec::new(),
                    ..e.clone()
                })
                .collect();
            Err(ConfigError::gathered(beside).unwrap_or(error))
        }
    }
}

/// Checks that `edited` loads as `text` with `devices` appended and nothing else changed.
fn check_edit(text: &str, edited: &str, devices: &[NewDevice]) -> Result<(), EditError> {
    let mut expected = parse_for_adding(text).map_err(EditError::Original)?;
    let after = parse_with(edited, Secrets::Skip).map_err(EditError::Invalid)?;
    for device in devices {
        let address = MinerAddress::parse(&device.ip)
            .map_err(|message| EditError::Invalid(ConfigError::new("devices", None, message)))?;
        expected.devices.push(DeviceConfig {
            name: device.name.clone(),
            address,
            enabled: true,
        });
    }
    if after != expected {
        return Err(EditError::Changed);
    }
    Ok(())
}

/// One line of the file: its text and the line break it ended with (`\n`, `\r\n`, or
/// nothing for a last line without one).
#[derive(Debug, Clone)]
struct Line {
    content: String,
    ending: String,
}

fn split_lines(body: &str) -> Vec<Line> {
    body.split_inclusive('\n')
        .map(|piece| {
            let content = piece
                .strip_suffix('\n')
                .map_or(piece, |c| c.strip_suffix('\r').unwrap_or(c));
            Line {
                content: content.to_string(),
                ending: piece[content.len()..].to_string(),
            }
        })
        .collect()
}

/// A line that starts a top-level key (or a document marker): it ends the `devices:` list.
/// A `- ` at column 0 is an entry of a list that is not indented, not a key.
fn top_level(line: &str) -> bool {
    line.starts_with("---") || line.starts_with("...") || (!line.is_empty() && !line.starts_with([' ', '\t', '#', '-']))
}

/// A line with nothing but blanks or a comment.
fn insignificant(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// `value` (what follows a key on its line) split into the value and its comment (with
/// the blanks before it).
fn split_comment(value: &str) -> (&str, &str) {
    let bytes = value.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t')) {
            let value_part = value[..i].trim_end();
            return (value_part, &value[value_part.len()..]);
        }
    }
    (value.trim_end(), "")
}

/// `text` (a config file) with `devices` appended to its `devices:` list, every other
/// line, comment and blank kept as it was, in the file's line endings (`\r\n` stays
/// `\r\n`) and with its byte-order mark: block entries go after the list's last entry, in
/// the indentation the list already uses (two spaces when it is empty); a flow list
/// (`devices: [{name: a, ip: …}]`) gets the new entries before its closing bracket. A file
/// without a `devices:` key gets one at the end. A value this does not understand is
/// refused ([`EditError::Unsupported`]), never replaced.
pub fn add_devices_to_text(text: &str, devices: &[NewDevice]) -> Result<String, EditError> {
    if devices.is_empty() {
        return Ok(text.to_string());
    }
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let mut lines = split_lines(body);
    // New lines are written with the break the file already uses.
    let eol = lines
        .iter()
        .map(|l| l.ending.as_str())
        .find(|e| !e.is_empty())
        .unwrap_or("\n")
        .to_string();
    if let Some(last) = lines.last_mut() {
        if last.ending.is_empty() {
            last.ending = eol.clone();
        }
    }
    let line = |content: String| Line {
        content,
        ending: eol.clone(),
    };
    let block_entries = |indent: &str| -> Vec<Line> {
        devices
            .iter()
            .flat_map(|d| {
                let note: String = d.note.chars().filter(|c| !c.is_control()).collect();
                [
                    line(format!("{indent}- name: {}   # {note}", yaml_quoted(&d.name))),
                    line(format!("{indent}  ip: {}", yaml_quoted(&d.ip))),
                ]
            })
            .collect()
    };
    let start = lines
        .iter()
        .position(|l| l.content.starts_with("devices:") && top_level(&l.content));
    let Some(start) = start else {
        if lines.last().is_some_and(|l| !l.content.trim().is_empty()) {
            lines.push(line(String::new()));
        }
        lines.push(line("devices:".into()));
        lines.extend(block_entries("  "));
        return Ok(join(bom, &lines));
    };
    // The list ends before the next top-level key; trailing blanks and comments stay after
    // the new entries.
    let end = (start + 1..lines.len())
        .find(|&i| top_level(&lines[i].content))
        .unwrap_or(lines.len());
    let after_key = lines[start].content["devices:".len()..].to_string();
    let (value, comment) = split_comment(&after_key);
    let value = value.trim();
    if value.is_empty() {
        let first = (start + 1..end).find(|&i| !insignificant(&lines[i].content));
        let Some(first) = first else {
            // `devices:` and nothing under it yet.
            let entries = block_entries("  ");
            lines.splice(start + 1..start + 1, entries);
            return Ok(join(bom, &lines));
        };
        let content = lines[first].content.clone();
        let trimmed = content.trim_start();
        if trimmed == "-" || trimmed.starts_with("- ") || trimmed.starts_with("-\t") {
            let indent = &content[..content.len() - trimmed.len()];
            let last = (start + 1..end)
                .rev()
                .find(|&i| !insignificant(&lines[i].content))
                .unwrap_or(first);
            let entries = block_entries(indent);
            lines.splice(last + 1..last + 1, entries);
            return Ok(join(bom, &lines));
        }
        if trimmed.starts_with('[') {
            let column = content.len() - trimmed.len();
            append_to_flow(&mut lines, first, column, devices)?;
            return Ok(join(bom, &lines));
        }
        return Err(EditError::Unsupported(describe(trimmed)));
    }
    if value.starts_with('[') && value[1..].trim_start() == "]" {
        // `devices: []` becomes a block list (its comment kept).
        lines[start].content = format!("devices:{comment}");
        let entries = block_entries("  ");
        lines.splice(start + 1..start + 1, entries);
        return Ok(join(bom, &lines));
    }
    if value.starts_with('[') {
        let column = "devices:".len() + after_key.len() - after_key.trim_start().len();
        append_to_flow(&mut lines, start, column, devices)?;
        return Ok(join(bom, &lines));
    }
    Err(EditError::Unsupported(describe(value)))
}

/// What a `devices:` value the edit does not rewrite looks like, for the message.
fn describe(value: &str) -> String {
    let shown: String = value.chars().take(24).filter(|c| !c.is_control()).collect();
    format!("`{shown}`")
}

/// Adds `devices` to the flow list whose `[` is at `column` of line `open`: after its last
/// entry (a trailing comma is used, not doubled), as `{name: "…", ip: "…"}`. The scan
/// knows quoted strings and comments, so a `]` or `#` inside a name ends nothing.
fn append_to_flow(lines: &mut [Line], open: usize, column: usize, devices: &[NewDevice]) -> Result<(), EditError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    // Where the last character that is neither a blank nor a comment ends, and what it was.
    let mut last_significant: Option<(usize, usize, char)> = None;
    let mut close = None;
    'lines: for (index, line) in lines.iter().enumerate().skip(open) {
        let from = if index == open { column } else { 0 };
        let mut previous = if from == 0 {
            '\n'
        } else {
            line.content[..from].chars().next_back().unwrap_or(' ')
        };
        for (offset, c) in line.content[from..].char_indices() {
            let at = from + offset;
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if q == '"' && c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            } else {
                match c {
                    '"' | '\'' if matches!(previous, '\n' | ' ' | '\t' | '[' | '{' | ',' | ':') => quote = Some(c),
                    '#' if matches!(previous, '\n' | ' ' | '\t') => break,
                    '[' | '{' => depth += 1,
                    ']' | '}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            close = Some((index, at));
                            break 'lines;
                        }
                    }
                    _ => {}
                }
            }
            if !c.is_whitespace() {
                last_significant = Some((index, at + c.len_utf8(), c));
            }
            previous = c;
        }
    }
    let (Some(_), Some((line_index, end, last))) = (close, last_significant) else {
        return Err(EditError::Unsupported("a flow list without its closing `]`".into()));
    };
    let entries: Vec<String> = devices
        .iter()
        .map(|d| format!("{{name: {}, ip: {}}}", yaml_quoted(&d.name), yaml_quoted(&d.ip)))
        .collect();
    let inserted = match last {
        '[' => entries.join(", "),
        ',' => format!(" {}", entries.join(", ")),
        _ => format!(", {}", entries.join(", ")),
    };
    lines[line_index].content.insert_str(end, &inserted);
    Ok(())
}

fn join(bom: &str, lines: &[Line]) -> String {
    let mut out = String::from(bom);
    for line in lines {
        out.push_str(&line.content);
        out.push_str(&line.ending);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn new(name: &str, ip: &str) -> NewDevice {
        NewDevice {
            name: name.into(),
            ip: ip.into(),
            note: "found".into(),
        }
    }

    fn names(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .devices
            .into_iter()
            .map(|d| d.name)
            .collect()
    }

    #[test]
    fn flow_lists_get_the_new_entries_and_keep_theirs() {
        let added = [new("n]#x", "10.0.0.3")];
        // One line, with a bracket and a hash inside a quoted name.
        let one_line = "devices: [{name: \"a]#\", ip: 10.0.0.1}, {name: 'b', ip: 10.0.0.2}] # shelf\n";
        let edited = add_devices_to_config(one_line, &added).unwrap();
        assert_eq!(
            edited,
            "devices: [{name: \"a]#\", ip: 10.0.0.1}, {name: 'b', ip: 10.0.0.2}, {name: \"n]#x\", ip: \"10.0.0.3\"}] # shelf\n"
        );
        // Over several lines, with a trailing comma and a comment inside.
        let multi = "devices: [\n  {name: a, ip: 10.0.0.1},  # first\n  {name: b, ip: 10.0.0.2},\n]\nlogging:\n  poll_interval: 30\n";
        let edited = add_devices_to_config(multi, &added).unwrap();
        assert_eq!(names(&edited), ["a", "b", "n]#x"]);
        assert!(edited.ends_with("\n]\nlogging:\n  poll_interval: 30\n"), "{edited}");
        // The list on the line after the key.
        let below = "devices:\n  [{name: a, ip: 10.0.0.1}]\n";
        assert_eq!(names(&add_devices_to_config(below, &added).unwrap()), ["a", "n]#x"]);
        // Unterminated: refused, not guessed.
        assert!(matches!(
            add_devices_to_text("devices: [{name: a, ip: 10.0.0.1}\n", &added),
            Err(EditError::Unsupported(_))
        ));
    }

    #[test]
    fn line_endings_bom_and_a_missing_last_newline_are_kept() {
        let added = [new("n", "10.0.0.3")];
        let crlf = "devices:\r\n  - name: a\r\n    ip: 10.0.0.1\r\nlogging:\r\n  poll_interval: 30";
        let edited = add_devices_to_config(crlf, &added).unwrap();
        assert_eq!(
            edited,
            "devices:\r\n  - name: a\r\n    ip: 10.0.0.1\r\n  - name: \"n\"   # found\r\n    ip: \"10.0.0.3\"\r\nlogging:\r\n  poll_interval: 30\r\n"
        );
        let bom = "\u{feff}# miners\ndevices:\n  - name: a\n    ip: 10.0.0.1\n";
        let edited = add_devices_to_config(bom, &added).unwrap();
        assert!(
            edited.starts_with("\u{feff}# miners\ndevices:\n  - name: a\n"),
            "{edited:?}"
        );
        assert_eq!(names(&edited), ["a", "n"]);
    }

    #[test]
    fn a_list_at_column_zero_takes_entries_at_column_zero() {
        let text = "devices:\n- name: a\n  ip: 10.0.0.1\nlogging:\n  poll_interval: 30\n";
        let edited = add_devices_to_config(text, &[new("n", "10.0.0.3")]).unwrap();
        assert_eq!(names(&edited), ["a", "n"]);
        assert!(
            edited.contains("\n- name: \"n\"   # found\n  ip: \"10.0.0.3\"\nlogging:"),
            "{edited}"
        );
    }

    #[test]
    fn an_edit_that_would_lose_or_change_anything_is_refused() {
        let added = [new("n", "10.0.0.3")];
        let flow = "devices: [{name: a, ip: 10.0.0.1}]\nlogging:\n  poll_interval: 30\n";
        // What the edit once made of a flow list: the new miner in place of the old ones.
        let lost = "devices:\n  - name: n\n    ip: 10.0.0.3\nlogging:\n  poll_interval: 30\n";
        assert!(matches!(check_edit(flow, lost, &added), Err(EditError::Changed)));
        // A setting changed on the way.
        let changed = "devices: [{name: a, ip: 10.0.0.1}, {name: n, ip: 10.0.0.3}]\nlogging:\n  poll_interval: 60\n";
        assert!(matches!(check_edit(flow, changed, &added), Err(EditError::Changed)));
        let right = "devices: [{name: a, ip: 10.0.0.1}, {name: n, ip: 10.0.0.3}]\nlogging:\n  poll_interval: 30\n";
        assert!(check_edit(flow, right, &added).is_ok());
        // A value the edit does not understand is refused before any of that.
        let aliased = "devices: &d\n  - name: a\n    ip: 10.0.0.1\n";
        assert!(matches!(
            add_devices_to_config(aliased, &added),
            Err(EditError::Unsupported(_))
        ));
    }

    #[test]
    fn an_empty_file_or_device_list_takes_the_first_devices() {
        let added = [new("n", "10.0.0.3")];
        for text in ["", "devices: []\n", "# soon\nlogging:\n  poll_interval: 30\n"] {
            assert!(parse(text).is_err());
            let edited = add_devices_to_config(text, &added).unwrap();
            assert_eq!(names(&edited), ["n"], "{text:?}");
        }
        // Any other fault is still refused.
        assert!(parse_for_adding("devices: []\nlogging:\n  poll_interval: 0\n").is_err());
        assert!(parse_for_adding("devices: []\nbogus: 1\n").is_err());
        // A fault in a listed device keeps its line.
        let bad = parse_for_adding("devices:\n  - name: a\n    ip: \"http://x\"\n").unwrap_err();
        assert_eq!((bad.key.as_str(), bad.line), ("devices[0].ip", Some(3)));
    }
}
