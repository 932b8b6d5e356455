//! The crate's layering rules, checked by reading `src/`.
//!
//! Switchboard is layered so that each feature has one place to go and one direction to
//! import in (ARCHITECTURE.md draws it). This test is how the rules are kept: it parses every
//! `crate::`/`super::` path in `src/` (outside `#[cfg(test)]` items and comments), resolves it
//! to the file that defines the module, and fails naming the file, the rule and how to fix it.
//!
//! The tiers, lowest first. A file may import its own tier and the tiers below, never above:
//!
//! | tier | modules | may know |
//! |---|---|---|
//! | 0 leaves | `config`, `clock`, `domain` (ids), `tasks`, `telemetry`, `metrics` | std, crates |
//! | 1 backends | `store`, `memory`, `broker`, `upstream`, `auth`, `record` | leaves |
//! | 2 domain | `scenario`, `tools`, `moderation`, `orchestrator` | backends' traits, the upstream client |
//! | 3 application | `sessions` (use-cases: switch agent, run a tool, publish, claim, end a call), `realtime` | the domain |
//! | 4 edge | `http`, `ws`, `error`, `state`, `startup` | everything |
//!
//! Besides the direction: nothing below the edge names axum, `ApiError`, `AppState` or
//! `crate::http`; and no two files import each other in a circle, however long. A module's
//! facade (`foo/mod.rs`, or `foo.rs` beside `foo/`) declaring and re-exporting its own
//! children is not counted as an import of them, so a child may use its parent's trait.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// The tier of a top-level module; `None` for a module the table does not know (itself a
/// failure, so a new module gets placed on purpose).
fn tier(top: &str) -> Option<u8> {
    Some(match top {
        "config" | "clock" | "domain" | "tasks" | "telemetry" | "metrics" => 0,
        "store" | "memory" | "broker" | "upstream" | "auth" | "record" => 1,
        "scenario" | "tools" | "moderation" | "orchestrator" => 2,
        "sessions" | "realtime" | "lifecycle" => 3,
        "http" | "ws" | "error" | "state" | "startup" => 4,
        _ => return None,
    })
}

const TIER_NAMES: [&str; 5] = ["leaves", "backends", "domain", "application", "edge"];

/// Words that only the edge may use: the web framework, the HTTP error type, the state.
const EDGE_ONLY: [(&str, &str); 4] = [
    ("axum", "the web framework"),
    (
        "ApiError",
        "the HTTP error type; return a thiserror enum mapped in http/error.rs",
    ),
    (
        "AppState",
        "the edge's state; take the narrow dependencies you need",
    ),
    ("crate::http", "the HTTP edge"),
];

/// `src/` of this crate (or `SWITCHBOARD_ARCH_SRC`, to measure another checkout).
fn src_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_ARCH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// Every `.rs` file under `src/` except the crate roots, as paths relative to `src/`.
fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("src/ is readable")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p.strip_prefix(src_dir()).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(&src_dir(), &mut out);
    out.retain(|p| p != Path::new("lib.rs") && p != Path::new("main.rs"));
    out
}

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are both `[a, b]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut segs: Vec<String> = file
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().unwrap();
    if last != "mod.rs" {
        segs.push(last.trim_end_matches(".rs").to_owned());
    }
    segs
}

/// The file defining module `segs`, if there is one.
fn file_of(segs: &[String]) -> Option<PathBuf> {
    if segs.is_empty() {
        return None;
    }
    let base: PathBuf = segs.iter().collect();
    let flat = base.with_extension("rs");
    if src_dir().join(&flat).is_file() {
        return Some(flat);
    }
    let nested = base.join("mod.rs");
    src_dir().join(&nested).is_file().then_some(nested)
}

/// The source with comments, string and char literals blanked, and `#[cfg(test)]` items
/// removed, so only code is searched.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && !ident_byte(b, i)
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' && b.get(i + 1) == Some(&b'\\') {
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    strip_test_items(&out)
}

fn ident_byte(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

fn strip_test_items(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at..];
        let brace = rest.find('{');
        let semi = rest.find(';');
        let end = match (brace, semi) {
            (Some(bp), Some(sp)) if sp < bp => at + sp + 1,
            (Some(bp), _) => {
                let mut depth = 0usize;
                let mut end = out.len();
                for (k, ch) in out[at + bp..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = at + bp + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(sp)) => at + sp + 1,
            (None, None) => out.len(),
        };
        out.replace_range(at..end, "");
    }
    out
}

/// A tiny reader of paths: `crate::a::{b, c::d}` gives `[a, b]` and `[a, c, d]`.
struct Paths<'a> {
    s: &'a [u8],
    i: usize,
}

impl Paths<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn ident(&mut self) -> Option<String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn eat(&mut self, tok: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(tok.as_bytes()) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    /// Reads the rest of a path after a `::`, pushing each full path into `out`.
    fn tail(&mut self, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.eat("{") {
            loop {
                if self.eat("}") {
                    break;
                }
                let mut p = prefix.clone();
                if let Some(id) = self.ident() {
                    if id != "self" {
                        p.push(id);
                    }
                    if self.eat("::") {
                        self.tail(p, out);
                    } else {
                        out.push(p);
                    }
                } else if !self.eat("*") && self.i < self.s.len() {
                    self.i += 1;
                } else {
                    out.push(p);
                }
                if self.eat("as") {
                    self.ident();
                }
                self.eat(",");
                if self.i >= self.s.len() {
                    break;
                }
            }
        } else if self.eat("*") {
            out.push(prefix);
        } else if let Some(id) = self.ident() {
            let mut p = prefix;
            p.push(id);
            if self.eat("::") {
                self.tail(p, out);
            } else {
                out.push(p);
            }
        } else {
            out.push(prefix);
        }
    }
}

/// Every crate path the code names, made absolute (from the crate root).
fn crate_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let here = &code[i..];
        let starts_word = !ident_byte(b, i) && (i == 0 || b[i - 1] != b':');
        if starts_word && (here.starts_with("crate::") || here.starts_with("super::")) {
            let mut base: Vec<String> = Vec::new();
            let mut p = Paths { s: b, i };
            if here.starts_with("crate::") {
                p.i += "crate::".len();
            } else {
                base = module.to_vec();
                while p.eat("super::") {
                    base.pop();
                }
            }
            p.tail(base, &mut out);
            i = p.i.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The file a path lands in: the longest prefix that is a module file.
fn resolve(path: &[String], root_reexports: &HashMap<String, String>) -> Option<PathBuf> {
    for k in (1..=path.len()).rev() {
        if let Some(f) = file_of(&path[..k]) {
            return Some(f);
        }
    }
    let via = root_reexports.get(path.first()?)?;
    file_of(std::slice::from_ref(via))
}

/// `pub use config::Config;` in lib.rs: `Config` -> `config`.
fn root_reexports() -> HashMap<String, String> {
    let lib = fs::read_to_string(src_dir().join("lib.rs")).expect("lib.rs is readable");
    let mut map = HashMap::new();
    for line in code_of(&lib).lines() {
        if let Some(rest) = line.trim().strip_prefix("pub use ") {
            let rest = rest.trim_end_matches(';');
            let segs: Vec<&str> = rest.split("::").collect();
            if segs.len() >= 2 {
                map.insert(segs[segs.len() - 1].to_owned(), segs[0].to_owned());
            }
        }
    }
    map
}

/// Whether `parent` is the facade of `child`'s module (an ancestor module file).
fn is_facade_of(parent: &Path, child: &Path) -> bool {
    let pm = module_of(parent);
    let cm = module_of(child);
    cm.len() > pm.len() && cm.starts_with(&pm)
}

struct Crate {
    /// file -> the files it imports (facade edges left out).
    edges: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
    /// file -> its code.
    code: BTreeMap<PathBuf, String>,
}

fn read_crate() -> Crate {
    let reexports = root_reexports();
    let mut edges = BTreeMap::new();
    let mut code = BTreeMap::new();
    for file in source_files() {
        let text = fs::read_to_string(src_dir().join(&file)).expect("source is readable");
        let c = code_of(&text);
        let module = module_of(&file);
        let mut targets = BTreeSet::new();
        for path in crate_paths(&c, &module) {
            if let Some(t) = resolve(&path, &reexports)
                && t != file
                && !is_facade_of(&file, &t)
            {
                targets.insert(t);
            }
        }
        edges.insert(file.clone(), targets);
        code.insert(file, c);
    }
    Crate { edges, code }
}

fn top(file: &Path) -> String {
    module_of(file).into_iter().next().unwrap_or_default()
}

/// Strongly connected components of more than one file (Tarjan).
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: HashMap<&'a Path, usize>,
        low: HashMap<&'a Path, usize>,
        stack: Vec<&'a Path>,
        on: BTreeSet<&'a Path>,
        next: usize,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Path) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w: &Path = w;
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_path_buf());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_path()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn report(rule: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "\n\nRULE: {rule}\n\n{}\n\n(see tests/architecture.rs and ARCHITECTURE.md)\n",
        problems.join("\n")
    );
}

#[test]
fn every_module_has_a_tier() {
    let krate = read_crate();
    let unknown: BTreeSet<String> = krate
        .edges
        .keys()
        .map(|f| top(f))
        .filter(|t| tier(t).is_none())
        .collect();
    let problems: Vec<String> = unknown
        .into_iter()
        .map(|m| {
            format!("  src/{m}: not in the tier table; add it to `tier()` in tests/architecture.rs")
        })
        .collect();
    report(
        "every top-level module sits in one tier (leaves, backends, domain, application, edge)",
        &problems,
    );
}

#[test]
fn imports_point_down_the_tiers() {
    let krate = read_crate();
    let mut problems = Vec::new();
    for (file, targets) in &krate.edges {
        let Some(from) = tier(&top(file)) else {
            continue;
        };
        for t in targets {
            let Some(to) = tier(&top(t)) else { continue };
            if to > from {
                problems.push(format!(
                    "  src/{} ({}) imports src/{} ({}): move the shared piece down, or pass it in as a parameter or trait",
                    file.display(),
                    TIER_NAMES[from as usize],
                    t.display(),
                    TIER_NAMES[to as usize],
                ));
            }
        }
    }
    report(
        "a file imports only its own tier and the ones below: leaves < backends < domain < application < edge",
        &problems,
    );
}

#[test]
fn only_the_edge_knows_the_web() {
    let krate = read_crate();
    let mut problems = Vec::new();
    for (file, code) in &krate.code {
        if tier(&top(file)).is_none_or(|t| t >= 4) {
            continue;
        }
        for (word, what) in EDGE_ONLY {
            let b = code.as_bytes();
            let hit = code.match_indices(word).any(|(at, _)| {
                let before_ok =
                    at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
                let after = b.get(at + word.len());
                before_ok && !after.is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            });
            if hit {
                problems.push(format!("  src/{} names `{word}` ({what})", file.display()));
            }
        }
    }
    report(
        "below the edge (http/, ws/, error, state, startup), no file names axum, ApiError, AppState or crate::http",
        &problems,
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let krate = read_crate();
    let problems: Vec<String> = circles(&krate.edges)
        .into_iter()
        .map(|c| {
            let names: Vec<String> = c.iter().map(|f| format!("src/{}", f.display())).collect();
            let mut s = format!("  a circle of {} files: {}", c.len(), names.join(", "));
            for f in &c {
                let inside: Vec<String> = krate.edges[f]
                    .iter()
                    .filter(|t| c.contains(t))
                    .map(|t| t.display().to_string())
                    .collect();
                s.push_str(&format!(
                    "\n      src/{} -> {}",
                    f.display(),
                    inside.join(", ")
                ));
            }
            s
        })
        .collect();
    report(
        "no files import each other in a circle: break it by moving the shared piece into a lower file",
        &problems,
    );
}

/// The reader itself: the rules are only as good as the paths it finds.
#[test]
fn the_path_reader_finds_nested_groups_and_skips_tests_and_strings() {
    let code = code_of(
        "use crate::a::{b, c::{d, e as f}};\nfn x() { crate::g::h(); let s = \"crate::nope\"; }\n// crate::comment\n#[cfg(test)]\nmod tests { use crate::t; }\n",
    );
    let mut got = crate_paths(&code, &["m".into(), "n".into()]);
    got.sort();
    let want: Vec<Vec<String>> = vec![
        vec!["a".into(), "b".into()],
        vec!["a".into(), "c".into(), "d".into()],
        vec!["a".into(), "c".into(), "e".into()],
        vec!["g".into(), "h".into()],
    ];
    assert_eq!(got, want);
    let sup = crate_paths(
        "use super::super::x::y;",
        &["a".into(), "b".into(), "c".into()],
    );
    assert_eq!(sup, vec![vec!["a".to_string(), "x".into(), "y".into()]]);
}
