//! Writing config text: one YAML string writer for every config this tool writes, and
//! `discover --add-to`'s edit of an existing file that keeps its comments and order.

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

/// `text` (a config file) with `devices` appended to its `devices:` list, every other
/// line, comment and blank kept as it was: the entries go after the list's last line, in
/// the indentation the list already uses (two spaces when it is empty). A file without a
/// `devices:` key gets one at the end.
pub fn add_devices_to_text(text: &str, devices: &[NewDevice]) -> String {
    if devices.is_empty() {
        return text.to_string();
    }
    let lines: Vec<&str> = text.lines().collect();
    let top_level = |line: &str| !line.is_empty() && !line.starts_with([' ', '\t', '#']);
    let start = lines.iter().position(|l| l.starts_with("devices:") && top_level(l));
    let entries = |indent: &str| -> Vec<String> {
        devices
            .iter()
            .flat_map(|d| {
                let note: String = d.note.chars().filter(|c| !c.is_control()).collect();
                [
                    format!("{indent}- name: {}   # {note}", yaml_quoted(&d.name)),
                    format!("{indent}  ip: {}", yaml_quoted(&d.ip)),
                ]
            })
            .collect()
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match start {
        None => {
            if out.last().is_some_and(|l| !l.trim().is_empty()) {
                out.push(String::new());
            }
            out.push("devices:".into());
            out.extend(entries("  "));
        }
        Some(start) => {
            // `devices: []` (or any flow value) becomes a block list.
            let value = lines[start]["devices:".len()..].split('#').next().unwrap_or("").trim();
            if !value.is_empty() {
                out[start] = "devices:".into();
            }
            // The list ends before the next top-level key; trailing blanks and comments
            // stay after the new entries.
            let mut end = lines.len();
            for (i, line) in lines.iter().enumerate().skip(start + 1) {
                if top_level(line) {
                    end = i;
                    break;
                }
            }
            let mut last = start;
            for (i, line) in lines.iter().enumerate().take(end).skip(start + 1) {
                let trimmed = line.trim_start();
                if !trimmed.is_empty() && !trimmed.starts_with('#') {
                    last = i;
                }
            }
            let indent = lines[start + 1..end]
                .iter()
                .find_map(|l| {
                    let trimmed = l.trim_start();
                    trimmed
                        .starts_with("- ")
                        .then(|| l[..l.len() - trimmed.len()].to_string())
                })
                .unwrap_or_else(|| "  ".into());
            let at = if value.is_empty() { last + 1 } else { start + 1 };
            for (offset, entry) in entries(&indent).into_iter().enumerate() {
                out.insert(at + offset, entry);
            }
        }
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}
