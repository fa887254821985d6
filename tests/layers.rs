//! The layer picture stays true: every library module imports only from the
//! layers below it (or from itself), the codecs and the pool do no I/O, and
//! the library never reaches the binary's tools. See docs/ARCHITECTURE.md.

use std::path::{Path, PathBuf};

/// The library's top-level modules, bottom layer first. Modules on the
/// same rank may not import each other.
const LAYERS: &[(&str, u8)] = &[
    ("proto", 0),
    ("hub", 1),
    ("pool", 2),
    ("tls", 3),
    ("config", 4),
    ("rt", 5),
    ("hooks", 6),
    ("proxy", 7),
    ("server", 8),
    ("admin", 9),
    ("agent", 9),
    ("balancer", 10),
    ("lib", 11),
];

/// Crates a layer without I/O must not name.
const IO_CRATES: &[&str] = &["monoio", "monoio_rustls", "socket2", "io_uring", "libc"];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a library file belongs to (`None`: the binary's).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    match name.as_str() {
        "main" | "cmd" => None,
        _ => Some(name),
    }
}

/// Every `crate::NAME` a line of code names (comments stripped).
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    code.match_indices("crate::")
        .filter(|(i, _)| {
            // `wslb::crate::` does not occur; skip `pub(crate)` and the like.
            !code[..*i].ends_with('(')
        })
        .filter_map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Every violation: (file, line, what).
fn violations() -> Vec<(String, usize, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let own = rank(&module).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` has no layer: add it to LAYERS and docs/ARCHITECTURE.md",
                file.display()
            )
        });
        let text = std::fs::read_to_string(&file).expect("readable source");
        let shown = file
            .strip_prefix(&src)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if target == module {
                    continue;
                }
                match rank(&target) {
                    Some(r) if r < own => {}
                    Some(_) => found.push((
                        shown.clone(),
                        n + 1,
                        format!("`{module}` imports `{target}`, which is not below it"),
                    )),
                    None => found.push((
                        shown.clone(),
                        n + 1,
                        format!("`{module}` names `crate::{target}`, which is not a library layer"),
                    )),
                }
            }
            if rank(&module).is_some_and(|r| r <= 1) {
                let code = line.split("//").next().unwrap_or_default();
                for krate in IO_CRATES {
                    let named = code.contains(&format!("{krate}::"));
                    if named {
                        found.push((
                            shown.clone(),
                            n + 1,
                            format!("`{module}` does no I/O but names `{krate}`"),
                        ));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_import_points_down() {
    let found = violations();
    assert!(
        found.is_empty(),
        "imports that climb the layers:\n{}",
        found
            .iter()
            .map(|(f, l, w)| format!("  src/{f}:{l}: {w}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_checker_sees_a_climbing_import() {
    // The parser the check relies on: paths are found, comments ignored,
    // visibility modifiers not mistaken for paths.
    assert_eq!(crate_paths("use crate::server::Shared;"), ["server"]);
    assert_eq!(
        crate_paths("    let x = crate::pool::clock::now_ms(); // crate::admin"),
        ["pool"]
    );
    assert!(crate_paths("pub(crate) fn f() {}").is_empty());
    assert!(crate_paths("/// see crate::proxy").is_empty());
    assert!(rank("proxy") < rank("server"));
}
