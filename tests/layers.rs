//! The source layout's rooms and what each may import (ARCHITECTURE.md): a module may use
//! only the modules below it, so `axeos` never reaches into `config`, the ledger never into
//! the daemon, the daemon never into the web. Read from the source files themselves, so a
//! new upward `use` fails here before review.

use std::path::Path;

/// From the bottom up. A module may import only those of a lower rank; modules of one rank
/// do not import each other.
const LAYERS: &[(&str, u8)] = &[
    ("time", 0),
    ("process", 0),
    ("axeos", 1),
    ("config", 2),
    ("ledger", 3),
    ("analysis", 4),
    ("tune", 5),
    ("daemon", 6),
    ("web", 7),
    ("tui", 8),
    ("sim", 8),
    ("cli", 9),
];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Every `crate::MODULE` a file names outside comments, with its line number.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((number + 1, name));
            rest = after;
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let src = crate::support::repo_path("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut violations = Vec::new();
    for path in &all {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        let Some(own) = rank(&module) else {
            continue; // main.rs, lib.rs: the top.
        };
        let text = std::fs::read_to_string(path).unwrap();
        for (line, target) in imports(&text) {
            if target == module {
                continue;
            }
            match rank(&target) {
                Some(theirs) if theirs < own => {}
                Some(_) => violations.push(format!("src/{}:{line}: {module} imports {target}", relative.display())),
                None => {}
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run upward or sideways (see ARCHITECTURE.md):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    let found = imports(
        "use crate::web::api::FleetJson; // crate::cli in a comment\nlet x = crate::daemon::fleet::Fleet::new(&c);",
    );
    assert_eq!(found, [(1, "web".to_string()), (2, "daemon".to_string())]);
}
