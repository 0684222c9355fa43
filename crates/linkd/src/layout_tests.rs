//! Keeps the map in docs/architecture.md true: which part may use which.
//! A line that breaks a rule fails the test with its file and line.

use std::path::{Path, PathBuf};

/// The domain: rules and records, callable from the CLI, the handlers and
/// the tests alike. It never sees HTTP, the router or the shared state.
const DOMAIN: &[&str] = &[
    "accounts.rs",
    "clock.rs",
    "code_entry.rs",
    "code_flow.rs",
    "codes.rs",
    "ctx.rs",
    "device_flow.rs",
    "device_flow/",
    "devices.rs",
    "dpop.rs",
    "hashing.rs",
    "mail.rs",
    "outbox.rs",
    "phishing.rs",
    "recovery.rs",
    "scopes.rs",
    "sync.rs",
    "tokens.rs",
    "tokens/",
    "waits.rs",
    "webhooks.rs",
];

/// What the HTTP side is made of; the domain and the store name none of it.
const HTTP: &[&str] = &[
    "axum",
    "crate::web",
    "crate::oauth",
    "crate::api",
    "crate::app",
    "crate::state",
    "crate::middleware",
    "crate::serve",
    "crate::client_ip",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("layout_tests.rs")
        {
            out.push(path);
        }
    }
}

/// (file relative to src/, line number, line) for every line of code that
/// names one of `words`, comments left out.
fn offences(files: &[&str], words: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    sources(&root, &mut all);
    let mut found = Vec::new();
    for path in all {
        let rel = path
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if !files
            .iter()
            .any(|f| rel == *f || (f.ends_with('/') && rel.starts_with(f)))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if words.iter().any(|w| names(code, w)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

/// Whether `code` names `word` as a whole path segment: `crate::web`
/// names the web module, `crate::webhooks` does not.
fn names(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        !code[at + word.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_domain_never_sees_http() {
    let found = offences(DOMAIN, HTTP);
    assert!(
        found.is_empty(),
        "domain code names HTTP parts:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_store_never_sees_http_or_handlers() {
    let found = offences(&["store/"], HTTP);
    assert!(
        found.is_empty(),
        "the store names HTTP parts:\n{}",
        found.join("\n")
    );
}

#[test]
fn sql_lives_only_in_the_store() {
    let everything_else: Vec<String> = {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        sources(&root, &mut all);
        all.iter()
            .map(|p| {
                p.strip_prefix(&root)
                    .expect("under src")
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .filter(|rel| !rel.starts_with("store/"))
            .collect()
    };
    let files: Vec<&str> = everything_else.iter().map(String::as_str).collect();
    let found = offences(&files, &["sqlx", "rusqlite"]);
    assert!(
        found.is_empty(),
        "SQL drivers used outside store/:\n{}",
        found.join("\n")
    );
}

#[test]
fn handlers_do_not_import_the_router() {
    let found = offences(&["web/", "oauth/", "api/", "state.rs"], &["crate::app"]);
    assert!(
        found.is_empty(),
        "handlers import the router:\n{}",
        found.join("\n")
    );
}
