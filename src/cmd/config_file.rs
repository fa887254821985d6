//! Reading a `wslb serve --config` file: TOML with flat keys named after the
//! flags (see `config_keys`). Every value goes through its flag's own clap
//! value parser here, so a bad value is reported with its line before
//! anything else happens; unknown keys, tables and values of the wrong
//! shape are refused the same way, all of them at once.

use std::error::Error as _;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Command;
use toml::de::{DeTable, DeValue};

use crate::cmd::config_error::{line_of, ConfigFileError, KeyError};
use crate::cmd::config_keys::{lookup, suggest, Key, Shape, CONFIG_FLAG};

/// One value of a key, as the flag would receive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileValue {
    /// The value as command-line text.
    pub(crate) text: String,
    /// Its line (1-based).
    pub(crate) line: usize,
}

/// What a key sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Setting {
    /// A flag without a value: on or off.
    Switch(bool),
    /// The flag's values, in order (one for a single-value flag).
    Values(Vec<FileValue>),
}

/// One key of the file, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileEntry {
    /// The key as written (`pin`).
    pub(crate) written: String,
    /// The flag it sets (`no-pin`).
    pub(crate) flag: String,
    /// clap's id of that flag.
    pub(crate) id: String,
    /// The key's line (1-based).
    pub(crate) line: usize,
    /// What it sets.
    pub(crate) setting: Setting,
}

impl FileEntry {
    /// The command-line words equivalent to this key.
    pub(crate) fn tokens(&self) -> Vec<OsString> {
        match &self.setting {
            Setting::Switch(true) => vec![format!("--{}", self.flag).into()],
            Setting::Switch(false) => Vec::new(),
            Setting::Values(values) => values
                .iter()
                .map(|v| format!("--{}={}", self.flag, v.text).into())
                .collect(),
        }
    }

    /// The values, with their lines (none for a switch).
    pub(crate) fn values(&self) -> &[FileValue] {
        match &self.setting {
            Setting::Values(values) => values,
            Setting::Switch(_) => &[],
        }
    }
}

/// A configuration file whose every key and value was accepted.
#[derive(Clone, Debug)]
pub(crate) struct ConfigFile {
    /// The file, as named on the command line.
    pub(crate) path: PathBuf,
    /// Its keys, in file order.
    pub(crate) entries: Vec<FileEntry>,
}

/// Reads and checks a file against the keys of `serve`.
pub(crate) fn read(
    path: &Path,
    serve: &Command,
    keys: &[Key],
) -> Result<ConfigFile, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text, serve, keys)
}

/// Checks the text of a file (named `path` in errors).
pub(crate) fn parse(
    path: &Path,
    text: &str,
    serve: &Command,
    keys: &[Key],
) -> Result<ConfigFile, ConfigFileError> {
    let table = DeTable::parse(text).map_err(|e| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim().to_string(),
    })?;
    let mut items: Vec<_> = table.get_ref().iter().collect();
    items.sort_by_key(|(k, _)| k.span().start);
    let mut entries: Vec<FileEntry> = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in items {
        let written: &str = name.get_ref();
        let line = line_of(text, name.span().start);
        let refuse = |message: String| KeyError {
            file: path.to_path_buf(),
            line,
            key: written.to_string(),
            message,
        };
        let Some((key, inverted)) = lookup(keys, written) else {
            errors.push(refuse(unknown_key(keys, written, value.get_ref())));
            continue;
        };
        if let Some(first) = entries.iter().find(|e| e.flag == key.name) {
            errors.push(refuse(format!(
                "sets --{} again (already set by {} on line {})",
                key.name, first.written, first.line
            )));
            continue;
        }
        let checked = setting(key, inverted, value, text, serve);
        match checked {
            Ok(setting) => entries.push(FileEntry {
                written: written.to_string(),
                flag: key.name.clone(),
                id: key.id.clone(),
                line,
                setting,
            }),
            Err(problems) => errors.extend(problems.into_iter().map(|(line, message)| KeyError {
                file: path.to_path_buf(),
                line,
                key: written.to_string(),
                message,
            })),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigFileError::Keys(errors));
    }
    Ok(ConfigFile {
        path: path.to_path_buf(),
        entries,
    })
}

/// Why an unknown key is refused, with a hint.
fn unknown_key(keys: &[Key], written: &str, value: &DeValue<'_>) -> String {
    if written == CONFIG_FLAG {
        return "a configuration file cannot name another one".into();
    }
    if let DeValue::Table(inner) = value {
        let flat = inner
            .iter()
            .map(|(k, _)| format!("{written}-{}", k.get_ref()))
            .find(|n| lookup(keys, n).is_some());
        return match flat {
            Some(n) => format!("keys are flat, there are no tables (did you mean {n} = ...?)"),
            None => "keys are flat, there are no tables; each key is a `wslb serve` flag".into(),
        };
    }
    match suggest(keys, written) {
        Some(s) => format!("unknown key (did you mean {s}?)"),
        None => "unknown key (the keys are the `wslb serve` flags, see wslb serve --help)".into(),
    }
}

/// Checks one key's value against its flag: (line, message) per problem.
fn setting(
    key: &Key,
    inverted: bool,
    value: &toml::Spanned<DeValue<'_>>,
    text: &str,
    serve: &Command,
) -> Result<Setting, Vec<(usize, String)>> {
    let line = line_of(text, value.span().start);
    match (key.shape, value.get_ref()) {
        (Shape::Switch, DeValue::Boolean(on)) => Ok(Setting::Switch(*on != inverted)),
        (Shape::Switch, other) => Err(vec![(
            line,
            format!("expected true or false, not {}", other.type_str()),
        )]),
        (Shape::One, DeValue::Array(_)) => Err(vec![(
            line,
            format!(
                "takes one value, not an array (--{} is not repeatable)",
                key.name
            ),
        )]),
        (Shape::Many, DeValue::Array(items)) => {
            let mut values = Vec::new();
            let mut problems = Vec::new();
            for item in items.iter() {
                let line = line_of(text, item.span().start);
                match scalar(item.get_ref()).and_then(|t| check(key, &t, serve).map(|()| t)) {
                    Ok(text) => values.push(FileValue { text, line }),
                    Err(message) => problems.push((line, message)),
                }
            }
            if problems.is_empty() {
                Ok(Setting::Values(values))
            } else {
                Err(problems)
            }
        }
        (_, single) => scalar(single)
            .and_then(|t| check(key, &t, serve).map(|()| t))
            .map(|text| Setting::Values(vec![FileValue { text, line }]))
            .map_err(|message| vec![(line, message)]),
    }
}

/// A TOML scalar as the command-line text a flag would receive.
fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map(|n| n.to_string())
            .map_err(|_| format!("integer {i} out of range")),
        DeValue::Float(f) => Ok(f.as_str().to_string()),
        DeValue::Boolean(b) => Ok(b.to_string()),
        DeValue::Datetime(_) => Err("a date-time is not a value any flag takes".into()),
        DeValue::Array(_) => Err("an array inside an array is not a value".into()),
        DeValue::Table(_) => Err("a table is not a value; keys are flat".into()),
    }
}

/// Runs the flag's own value parser on `text`: `wslb serve --KEY=TEXT`
/// parsed alone, so the value is accepted exactly when the flag would
/// accept it (each part, for a flag that splits on a delimiter).
fn check(key: &Key, text: &str, serve: &Command) -> Result<(), String> {
    let words: [OsString; 2] = ["serve".into(), format!("--{}={text}", key.name).into()];
    match serve.clone().try_get_matches_from(words) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("invalid value {text:?}: {}", clap_reason(&e))),
    }
}

/// The reason in a clap error, without its `error:` prefix and usage.
fn clap_reason(e: &clap::Error) -> String {
    if let Some(source) = e.source() {
        return source.to_string();
    }
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
#[path = "config_file_tests.rs"]
mod tests;
