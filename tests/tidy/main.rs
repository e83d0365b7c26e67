//! The tidy test: the shape of the code (ARCHITECTURE.md), checked by reading the source.
//!
//! - `actix_web` (and the other actix crates) only in the HTTP modules and the binaries' wiring
//!   (`ACTIX_ALLOWED`);
//! - `diesel` only in the store crate (`store/`);
//! - an execution status's text (`"queued"`, `"running"`, ...) spelled only in the store;
//! - every crate and every module (file or directory under a crate's `src/`) named in
//!   ARCHITECTURE.md.
//!
//! The rules read the non-test source of the workspace's crates: `<crate>/src/`, without the
//! `#[cfg(test)]` modules and without comments. Integration tests, benches and the `tests/`
//! crate may use what they need to set up a real stack (a database row, a fake agent).

use std::fs;
use std::path::{Path, PathBuf};

use fresco_store::status::ExecutionStatus;

/// The crates of the workspace, as directories.
const CRATES: &[&str] = &[
    "common",
    "store",
    "api",
    "scheduler",
    "agent",
    "shim",
    "auth",
    "tests",
];

/// Where actix may be named: the HTTP modules and the wiring of the binaries that serve HTTP.
const ACTIX_ALLOWED: &[&str] = &[
    "api/src/http/",
    "api/src/main.rs",
    "scheduler/src/http.rs",
    "scheduler/src/service.rs",
    "agent/src/http.rs",
    "agent/src/local/http.rs",
    "agent/src/main.rs",
];

/// The actix crates, as paths in code.
const ACTIX: &[&str] = &[
    "actix_web",
    "actix_multipart",
    "actix_rt",
    "actix_http",
    "awc::",
];

/// Texts of a status spelled on purpose for something else, with why.
const STATUS_TEXT_ALLOWED: &[(&str, &str, &str)] = &[
    (
        "agent/src/runtime_api.rs",
        "error",
        "a path segment of the Lambda Runtime API (`/invocation/{id}/error`, `/init/error`)",
    ),
    (
        "agent/src/engine/fake.rs",
        "oom",
        "the handler name of the fake engine's test function that runs out of memory",
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Every file under `dir` ending in `.rs`, with its path relative to the workspace root.
fn rust_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(root())
                    .expect("under the root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((relative, path));
            }
        }
    }
    out.sort();
    out
}

/// The non-test source files of the workspace's crates (a unit-test module's own file,
/// `tests.rs`, is test code).
fn sources() -> Vec<(String, PathBuf)> {
    CRATES
        .iter()
        .flat_map(|krate| rust_files(&root().join(krate).join("src")))
        .filter(|(name, _)| !name.ends_with("/tests.rs"))
        .collect()
}

/// The code lines of a file (1-based number, text): comments removed, `#[cfg(test)]` items
/// (the unit tests) left out.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Skip the item that follows: up to the end of its braces (or its `;`).
            let mut depth = 0i32;
            let mut opened = false;
            for (_, line) in lines.by_ref() {
                let code = strip_comment(line);
                depth += code.matches('{').count() as i32;
                opened |= depth > 0;
                depth -= code.matches('}').count() as i32;
                if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push((n + 1, strip_comment(line).to_owned()));
    }
    out
}

/// The line without its `//` comment (a `//` inside a string literal is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            return &line[..i];
        }
    }
    line
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn actix_is_used_only_in_the_http_modules() {
    let mut found = Vec::new();
    for (name, path) in sources() {
        if ACTIX_ALLOWED
            .iter()
            .any(|allowed| name.starts_with(allowed))
        {
            continue;
        }
        for (n, line) in code_lines(&read(&path)) {
            if ACTIX.iter().any(|krate| line.contains(krate)) {
                found.push(format!("{name}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "actix outside the HTTP modules ({ACTIX_ALLOWED:?}):\n{}",
        found.join("\n")
    );
}

#[test]
fn diesel_is_used_only_in_the_store() {
    let mut found = Vec::new();
    for (name, path) in sources() {
        if name.starts_with("store/") {
            continue;
        }
        for (n, line) in code_lines(&read(&path)) {
            if line.contains("diesel") {
                found.push(format!("{name}:{n}: {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "diesel outside the store crate:\n{}",
        found.join("\n")
    );
}

/// Whether the literal at `at` (its opening quote) in `line` names a key or a path segment:
/// a JSON key (`"error": ...`), an index (`v["error"]`), a lookup (`.get("error")`), a
/// `Debug` field (`.field("timeout", ...)`).
fn is_key(line: &str, at: usize, literal: &str) -> bool {
    let after = line[at + literal.len()..].trim_start();
    let before = line[..at].trim_end();
    after.starts_with(':') && !after.starts_with("::")
        || before.ends_with('[') && after.starts_with(']')
        || before.ends_with(".get(")
        || before.ends_with(".field(")
}

#[test]
fn execution_statuses_are_spelled_only_in_the_store() {
    let mut found = Vec::new();
    for (name, path) in sources() {
        if name.starts_with("store/") {
            continue;
        }
        for (n, line) in code_lines(&read(&path)) {
            for status in ExecutionStatus::ALL {
                let literal = format!("\"{}\"", status.as_str());
                let allowed = STATUS_TEXT_ALLOWED
                    .iter()
                    .any(|(file, text, _)| *file == name && *text == status.as_str());
                for (at, _) in line.match_indices(&literal) {
                    if !allowed && !is_key(&line, at, &literal) {
                        found.push(format!("{name}:{n}: {}", line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "execution status texts outside the store (name an ExecutionStatus instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_rules_see_what_they_look_for() {
    // The checks above find nothing on a tidy tree; this shows they would find a violation.
    let lines = code_lines(
        "use diesel::prelude::*; // a comment naming actix_web\n\
         let s = \"queued\"; // \"running\"\n\
         let url = \"http://x\";\n\
         #[cfg(test)]\n\
         mod tests {\n    fn f() { let _ = \"oom\"; }\n}\n\
         json!({\"error\": 1});\n",
    );
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        text,
        [
            "use diesel::prelude::*; ",
            "let s = \"queued\"; ",
            "let url = \"http://x\";",
            "json!({\"error\": 1});",
        ]
    );
    let json = "json!({\"error\": 1});";
    assert!(is_key(
        json,
        json.find("\"error\"").expect("there"),
        "\"error\""
    ));
    let value = "status: \"error\".into(),";
    assert!(!is_key(
        value,
        value.find("\"error\"").expect("there"),
        "\"error\""
    ));
    let index = "v[\"error\"][\"message\"]";
    assert!(is_key(
        index,
        index.find("\"error\"").expect("there"),
        "\"error\""
    ));
}

#[test]
fn architecture_names_every_crate_and_module() {
    let architecture = read(&root().join("ARCHITECTURE.md"));
    let named = |name: &str| {
        architecture.contains(&format!("`{name}`"))
            || architecture.contains(&format!("{name}.rs"))
            || architecture.contains(&format!("{name}/"))
    };
    let mut missing = Vec::new();
    for krate in CRATES {
        if !architecture.contains(&format!("`{krate}/`")) {
            missing.push(format!("crate {krate}/"));
        }
        let src = root().join(krate).join("src");
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let relative = path
                    .strip_prefix(root())
                    .expect("under the root")
                    .display()
                    .to_string();
                if path.is_dir() {
                    if !named(&name) {
                        missing.push(format!("module directory {relative}"));
                    }
                    stack.push(path);
                } else if let Some(stem) = name.strip_suffix(".rs") {
                    if !["lib", "main", "mod", "tests"].contains(&stem) && !named(stem) {
                        missing.push(format!("module {relative}"));
                    }
                }
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "not named in ARCHITECTURE.md (as `name`, name.rs or name/):\n{}",
        missing.join("\n")
    );
}
