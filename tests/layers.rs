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

// ---------------------------------------------------------------------------------------
// File-level import circles: inside a module, two files that import each other (directly or
// in a ring) cannot be read or changed one at a time. Each file's imports of its siblings
// (`crate::a::b`, `super::x`, a child or an imported module's name) are read from the code
// alone: comments, string literals and `#[cfg(test)]` items do not count. A `pub use` of a
// module's own children (the facade in `mod.rs`) is no import of them; a path through a
// facade counts as an import of the file that defines the name.

/// Circles already known and being removed by another change, by one edge of each: the
/// edge is left out of the graph. An entry whose edge is gone fails the test, so the list
/// is emptied as the changes land.
const KNOWN_EDGES: &[(&str, &str, &str)] = &[];

/// Modules not checked yet, with why. An entry for a module without a circle fails the test.
const NOT_YET_CHECKED: &[(&str, &str)] = &[];

/// A source file as the circle check reads it.
struct Source {
    /// `src/`-relative, for messages: `web/render/charts.rs`.
    file: String,
    /// Its module path: `["web", "render", "charts"]` (`mod.rs` and `config.rs` name the folder).
    module: Vec<String>,
    /// The code with comments, literals and `#[cfg(test)]` items blanked (line breaks kept).
    code: String,
}

impl Source {
    fn new(file: &str, text: &str) -> Source {
        let mut module: Vec<String> = file.trim_end_matches(".rs").split('/').map(String::from).collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        Source {
            file: file.to_string(),
            module,
            code: without_test_items(&code_only(text)),
        }
    }

    fn line_of(&self, at: usize) -> usize {
        self.code[..at].matches('\n').count() + 1
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `text` with comments and string and character literals blanked, line breaks kept.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| chars.get(i + k) == Some(&c));
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let after_ident = i > 0 && is_ident(chars[i - 1]);
        let raw = if !after_ident && (at(i, "r#") || at(i, "r\"")) {
            Some(i + 1)
        } else if !after_ident && (at(i, "br#") || at(i, "br\"")) {
            Some(i + 2)
        } else {
            None
        };
        let end = if at(i, "//") {
            (i..chars.len()).find(|&j| chars[j] == '\n').unwrap_or(chars.len())
        } else if at(i, "/*") {
            let (mut depth, mut j) = (0, i);
            while j < chars.len() {
                if at(j, "/*") {
                    depth += 1;
                    j += 2;
                } else if at(j, "*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            j
        } else if let Some(hashes_at) = raw.filter(|&h| {
            let quote = (h..chars.len()).find(|&j| chars[j] != '#');
            quote.is_some_and(|q| chars[q] == '"')
        }) {
            let quote = (hashes_at..chars.len()).find(|&j| chars[j] != '#').unwrap();
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', quote - hashes_at))
                .collect();
            (quote + 1..chars.len())
                .find(|&j| at(j, &close))
                .map_or(chars.len(), |j| j + close.len())
        } else if chars[i] == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if chars[i] == '\'' && chars.get(i + 1) == Some(&'\\') {
            (i + 2..chars.len())
                .find(|&j| chars[j] == '\'')
                .map_or(chars.len(), |j| j + 1)
        } else if chars[i] == '\'' && chars.get(i + 2) == Some(&'\'') {
            i + 3
        } else {
            out.push(chars[i]);
            i += 1;
            continue;
        };
        let end = end.min(chars.len());
        out.extend(chars[i..end].iter().map(|c| if *c == '\n' { '\n' } else { ' ' }));
        i = end;
    }
    out
}

/// `code` with every `#[cfg(test)]` item blanked: up to its `;` or its closing brace.
fn without_test_items(code: &str) -> String {
    let mut code = code.to_string();
    while let Some(start) = code.find("#[cfg(test)]") {
        let mut depth = 0;
        let mut end = code.len();
        for (j, c) in code[start + "#[cfg(test)]".len()..].char_indices() {
            let j = start + "#[cfg(test)]".len() + j;
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => {
                    end = j + 1;
                    break;
                }
                '}' => depth -= 1,
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
        }
        let blank: String = code[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(start..end, &blank);
    }
    code
}

/// The paths a use tree or an inline path starting at `at` names, each as its segments
/// (`a::{b, c::d}` names `a::b` and `a::c::d`; a trailing `self` names the module itself).
fn paths_at(code: &str, at: usize) -> Vec<Vec<String>> {
    fn tree(code: &[char], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
        let mut segments = prefix.to_vec();
        loop {
            while i < code.len() && code[i].is_whitespace() {
                i += 1;
            }
            if code.get(i) == Some(&'{') {
                i += 1;
                loop {
                    while i < code.len() && (code[i].is_whitespace() || code[i] == ',') {
                        i += 1;
                    }
                    if i >= code.len() || code[i] == '}' {
                        return i + 1;
                    }
                    i = tree(code, i, &segments, out);
                }
            }
            let start = i;
            while i < code.len() && (is_ident(code[i]) || (i == start && code[i] == '*')) {
                i += 1;
            }
            if i == start {
                out.push(segments);
                return i;
            }
            let name: String = code[start..i].iter().collect();
            if name != "self" {
                segments.push(name);
            }
            if code.get(i) == Some(&':') && code.get(i + 1) == Some(&':') {
                i += 2;
            } else {
                out.push(segments);
                return i;
            }
        }
    }
    let chars: Vec<char> = code[at..].chars().collect();
    let mut out = Vec::new();
    tree(&chars, 0, &[], &mut out);
    out
}

/// Where in `code` a path starts with `name::` (not inside a longer path or name).
fn path_starts(code: &str, name: &str) -> Vec<usize> {
    let needle = format!("{name}::");
    code.match_indices(&needle)
        .map(|(at, _)| at)
        .filter(|&at| !code[..at].ends_with(|c: char| is_ident(c) || c == ':'))
        .collect()
}

/// `pub use` statements: (start, end) of each and the paths it names.
fn pub_uses(code: &str) -> Vec<(usize, usize, Vec<Vec<String>>)> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("use ") {
        if code[..at].ends_with(is_ident) {
            continue;
        }
        let before = code[..at].trim_end();
        let public = before.ends_with("pub")
            || (before.ends_with(')') && before.rfind("pub(").is_some_and(|p| !before[p..].contains('\n')));
        if !public {
            continue;
        }
        let start = before.rfind("pub").unwrap();
        let end = code[at..].find(';').map_or(code.len(), |e| at + e + 1);
        found.push((start, end, paths_at(code, at + "use ".len())));
    }
    found
}

/// The import graph between the files of each module.
struct Graph {
    sources: Vec<Source>,
    /// (from, to, line in `from`).
    edges: Vec<(usize, usize, usize)>,
}

impl Graph {
    fn new(sources: Vec<Source>) -> Graph {
        let mut graph = Graph {
            sources,
            edges: Vec::new(),
        };
        let mut edges = Vec::new();
        for from in 0..graph.sources.len() {
            for (at, path) in graph.references(from) {
                let Some((to, rest)) = graph.resolve(&path, 0) else {
                    continue;
                };
                let source = &graph.sources[from];
                if to != from && !rest && graph.sources[to].module[0] == source.module[0] {
                    edges.push((from, to, source.line_of(at)));
                }
            }
        }
        edges.sort();
        edges.dedup_by_key(|(from, to, _)| (*from, *to));
        graph.edges = edges;
        graph
    }

    fn file(&self, module: &[String]) -> Option<usize> {
        self.sources.iter().position(|s| s.module == module)
    }

    /// The file a path names an item of, and whether it names only a module (an alias).
    fn resolve(&self, path: &[String], depth: usize) -> Option<(usize, bool)> {
        let (file, taken) = (1..=path.len())
            .rev()
            .find_map(|n| self.file(&path[..n]).map(|f| (f, n)))?;
        let Some(name) = path.get(taken) else {
            return Some((file, true));
        };
        if depth > 4 {
            return Some((file, false));
        }
        let source = &self.sources[file];
        for (_, _, paths) in pub_uses(&source.code) {
            for reexported in paths {
                let absolute = self.absolute(file, &reexported);
                match (reexported.last(), absolute) {
                    (Some(last), Some(target)) if last == name => {
                        return self.resolve(&target, depth + 1).map(|(f, _)| (f, false));
                    }
                    (Some(last), Some(target)) if last == "*" => {
                        let module = &target[..target.len() - 1];
                        if let Some(g) = self.file(module).filter(|&g| defines(&self.sources[g].code, name)) {
                            return Some((g, false));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some((file, false))
    }

    /// A path as written in `file`, from the crate root; `None` for another crate's.
    fn absolute(&self, file: usize, path: &[String]) -> Option<Vec<String>> {
        let module = &self.sources[file].module;
        let first = path.first()?;
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "super" | "self" => module.clone(),
            child if self.file(&[module.clone(), vec![child.to_string()]].concat()).is_some() => module.clone(),
            _ => return None,
        };
        let mut rest = if first == "crate" { &path[1..] } else { path };
        while let Some(head) = rest.first().filter(|h| *h == "super" || *h == "self") {
            if head == "super" {
                base.pop();
            }
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// Every path in a file that may name another file, from the crate root, with where it
    /// is. A `pub use` of the file's own children is left out: it is the module's facade.
    fn references(&self, file: usize) -> Vec<(usize, Vec<String>)> {
        let source = &self.sources[file];
        let mut code = source.code.clone();
        for (start, end, paths) in pub_uses(&source.code) {
            let own_children = paths.iter().all(|p| {
                self.absolute(file, p)
                    .is_some_and(|a| a.len() > source.module.len() && a.starts_with(&source.module))
            });
            if own_children {
                let blank: String = code[start..end]
                    .chars()
                    .map(|c| if c == '\n' { '\n' } else { ' ' })
                    .collect();
                code.replace_range(start..end, &blank);
            }
        }
        let children = self
            .sources
            .iter()
            .filter(|s| s.module.len() == source.module.len() + 1 && s.module.starts_with(&source.module))
            .map(|s| s.module.last().unwrap().clone());
        let mut starts: Vec<String> = ["crate", "super", "self"].map(String::from).into();
        starts.extend(children);
        let mut found = Vec::new();
        let mut aliases: Vec<(String, Vec<String>)> = Vec::new();
        for start in &starts {
            for at in path_starts(&code, start) {
                for path in paths_at(&code, at) {
                    let Some(absolute) = self.absolute(file, &path) else {
                        continue;
                    };
                    if let Some((_, true)) = self.resolve(&absolute, 0) {
                        aliases.push((absolute.last().unwrap().clone(), absolute.clone()));
                    }
                    found.push((at, absolute));
                }
            }
        }
        for (alias, module) in aliases {
            if starts.contains(&alias) {
                continue;
            }
            for at in path_starts(&code, &alias) {
                for path in paths_at(&code, at) {
                    found.push((at, [module.clone(), path[1..].to_vec()].concat()));
                }
            }
        }
        found
    }

    /// The circles: sets of two or more files each reachable from every other.
    fn circles(&self) -> Vec<Vec<usize>> {
        let n = self.sources.len();
        let reach: Vec<Vec<bool>> = (0..n)
            .map(|start| {
                let mut seen = vec![false; n];
                let mut todo = vec![start];
                while let Some(at) = todo.pop() {
                    for &(_, to, _) in self.edges.iter().filter(|(from, _, _)| *from == at) {
                        if !seen[to] {
                            seen[to] = true;
                            todo.push(to);
                        }
                    }
                }
                seen
            })
            .collect();
        let mut circles: Vec<Vec<usize>> = Vec::new();
        for (a, from_a) in reach.iter().enumerate() {
            let circle: Vec<usize> = (0..n).filter(|&b| from_a[b] && reach[b][a]).collect();
            if circle.len() > 1 && !circles.contains(&circle) {
                circles.push(circle);
            }
        }
        circles
    }

    fn describe(&self, circle: &[usize]) -> String {
        let files: Vec<&str> = circle.iter().map(|&i| self.sources[i].file.as_str()).collect();
        let mut text = format!("circle: {}", files.join(", "));
        for &(from, to, line) in self
            .edges
            .iter()
            .filter(|(f, t, _)| circle.contains(f) && circle.contains(t))
        {
            text.push_str(&format!(
                "\n    src/{}:{line} imports src/{}",
                self.sources[from].file, self.sources[to].file
            ));
        }
        text
    }
}

/// Whether `code` defines an item called `name`.
fn defines(code: &str, name: &str) -> bool {
    ["fn", "struct", "enum", "const", "static", "type", "trait", "mod"]
        .iter()
        .any(|kw| {
            let needle = format!("{kw} {name}");
            code.match_indices(&needle)
                .any(|(at, _)| !code[..at].ends_with(is_ident) && !code[at + needle.len()..].starts_with(is_ident))
        })
}

fn sources_of(src: &Path) -> Vec<Source> {
    let mut all = Vec::new();
    files(src, &mut all);
    all.sort();
    all.iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
            (relative != "lib.rs" && relative != "main.rs")
                .then(|| Source::new(&relative, &std::fs::read_to_string(path).unwrap()))
        })
        .collect()
}

#[test]
fn no_two_files_of_a_module_import_each_other() {
    let mut graph = Graph::new(sources_of(&crate::support::repo_path("src")));
    let mut problems = Vec::new();
    for (from, to, why) in KNOWN_EDGES {
        let edge = |(f, t, _): &(usize, usize, usize)| graph.sources[*f].file == *from && graph.sources[*t].file == *to;
        if graph.edges.iter().any(edge) {
            graph.edges.retain(|e| !edge(e));
        } else {
            problems.push(format!(
                "src/{from} no longer imports src/{to} ({why}): remove it from KNOWN_EDGES"
            ));
        }
    }
    let circles = graph.circles();
    for (module, why) in NOT_YET_CHECKED {
        if !circles.iter().any(|c| graph.sources[c[0]].module[0] == *module) {
            problems.push(format!(
                "src/{module} has no import circle now ({why}): remove it from NOT_YET_CHECKED"
            ));
        }
    }
    for circle in &circles {
        let module = &graph.sources[circle[0]].module[0];
        if !NOT_YET_CHECKED.iter().any(|(m, _)| m == module) {
            problems.push(graph.describe(circle));
        }
    }
    assert!(
        problems.is_empty(),
        "files that import each other (move the shared type or function to where it belongs, or to a small module both import):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_circle_check_sees_a_ring_through_super_a_group_and_a_facade() {
    let graph =
        Graph::new(vec![
        Source::new(
            "a/mod.rs",
            "mod b; mod c; mod d;\npub use c::Thing;\n// use crate::a::d::X;\nfn f() { let s = \"crate::a::d::Y\"; }",
        ),
        Source::new("a/b.rs", "use super::{d::{self, Other}, Thing};"),
        Source::new("a/c.rs", "pub struct Thing;\nfn g() { crate::a::b::h(); }"),
        Source::new("a/d.rs", "pub struct Other;\n#[cfg(test)]\nmod tests { use crate::a::b::h; }"),
    ]);
    let circles: Vec<String> = graph.circles().iter().map(|c| graph.describe(c)).collect();
    assert_eq!(
        circles,
        ["circle: a/b.rs, a/c.rs\n    src/a/b.rs:1 imports src/a/c.rs\n    src/a/c.rs:2 imports src/a/b.rs"],
        "b reaches c through the facade's `Thing`; d's test module and a/mod.rs's comment and string do not count"
    );
}
