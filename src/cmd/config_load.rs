//! From the process's command line (with or without `--config FILE`) to a
//! validated [`ServeConfig`]: the file's keys are read and checked, the
//! flags override them key by key (the environment too, for the flags that
//! read one), the result goes through the same conversion as flags alone,
//! and then through [`ServeConfig::preflight`] (certificates loaded, static
//! backends parsed), nothing bound. A refusal names the file, the line and
//! the key when the value came from the file. `wslb serve` starts through
//! [`load_serve_config`] and a reload re-reads the file through it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
use wslb::config::{Preflight, PreflightError};
use wslb::ServeConfig;

use crate::cmd::cli::ServeArgs;
use crate::cmd::config_error::{ConfigFileError, KeyError};
use crate::cmd::config_file::{self, ConfigFile, FileEntry, FileValue, Setting};
use crate::cmd::config_keys::{cli_command, serve_command, serve_keys, Key, CONFIG_FLAG};

/// A configuration that would start, and where it came from.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The validated configuration.
    pub(crate) config: ServeConfig,
    /// What its check resolved (TLS configuration, backend addresses).
    pub(crate) preflight: Preflight,
    /// The log level (`--log-level` or the file's `log-level`).
    pub(crate) log_level: String,
    /// The log format (`--log-format` or the file's `log-format`).
    pub(crate) log_format: String,
    /// Where the log goes (`--log-file` or the file's `log-file`; `None`:
    /// stderr).
    pub(crate) log_file: Option<PathBuf>,
}

/// Turns the process's own command line (`wslb [global flags] serve
/// [flags] [--config FILE]`, program name first, as `std::env::args_os`
/// gives it) into a validated configuration, reading the file again on
/// every call; the one way `wslb serve` gets its configuration, at start
/// and on a reload (which takes [`Loaded::config`]).
pub(crate) fn load_serve_config(argv: &[OsString]) -> Result<Loaded, ConfigFileError> {
    let cli = cli_command();
    let flags_error = |e: clap::Error| ConfigFileError::Flags(clap_text(&e));
    let matches = cli
        .clone()
        .try_get_matches_from(argv)
        .map_err(flags_error)?;
    let serve_matches = serve_of(&matches)?;
    let Some(path) = serve_matches.get_one::<PathBuf>(CONFIG_FLAG).cloned() else {
        let config = args_of(serve_matches)?
            .into_config()
            .map_err(ConfigFileError::Flags)?;
        let preflight = config
            .preflight()
            .map_err(|e| ConfigFileError::Flags(e.to_string()))?;
        let (log_level, log_format, log_file) = logging_of(serve_matches);
        return Ok(Loaded {
            config,
            preflight,
            log_level,
            log_format,
            log_file,
        });
    };
    let serve = serve_command(&cli).ok_or_else(no_serve)?;
    let keys = serve_keys(serve);
    let file = config_file::read(&path, serve, &keys)?;
    // The file's keys go after the command line's words, except those
    // the command line (or the environment) already sets.
    let mut words = argv.to_vec();
    let mut applied = Vec::new();
    for entry in &file.entries {
        if !given(serve_matches, &entry.id) {
            words.extend(entry.tokens());
            applied.push(entry);
        }
    }
    let flags = command_line_settings(serve_matches, &keys);
    let sources = Sources {
        file: &file,
        applied,
        flags,
    };
    let merged = cli
        .try_get_matches_from(&words)
        .map_err(|e| sources.refusal(clap_text(&e)))?;
    let merged = serve_of(&merged)?;
    let config = args_of(merged)?
        .into_config()
        .map_err(|message| sources.refusal(message))?;
    let preflight = config.preflight().map_err(|e| match &e {
        PreflightError::Backend { index, .. } => sources
            .backend_refusal(*index, &e)
            .unwrap_or_else(|| sources.refusal(e.to_string())),
        _ => sources.refusal(e.to_string()),
    })?;
    let (log_level, log_format, log_file) = logging_of(merged);
    Ok(Loaded {
        config,
        preflight,
        log_level,
        log_format,
        log_file,
    })
}

/// The global logging flags as `serve` sees them.
fn logging_of(matches: &ArgMatches) -> (String, String, Option<PathBuf>) {
    let get = |id: &str, default: &str| {
        matches
            .try_get_one::<String>(id)
            .ok()
            .flatten()
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let file = matches
        .try_get_one::<PathBuf>("log_file")
        .ok()
        .flatten()
        .cloned();
    (get("log_level", "info"), get("log_format", "text"), file)
}

fn no_serve() -> ConfigFileError {
    ConfigFileError::Flags("not a `wslb serve` command line".into())
}

fn serve_of(matches: &ArgMatches) -> Result<&ArgMatches, ConfigFileError> {
    match matches.subcommand() {
        Some(("serve", m)) => Ok(m),
        _ => Err(no_serve()),
    }
}

fn args_of(matches: &ArgMatches) -> Result<ServeArgs, ConfigFileError> {
    ServeArgs::from_arg_matches(matches).map_err(|e| ConfigFileError::Flags(clap_text(&e)))
}

/// A clap error's first line, without its `error:` prefix.
fn clap_text(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Whether the command line (or the environment) sets this flag.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// What the command line (or the environment) sets, as entries with no
/// line, to tell a refusal about a flag from one about a key.
fn command_line_settings(matches: &ArgMatches, keys: &[Key]) -> Vec<FileEntry> {
    keys.iter()
        .filter(|key| given(matches, &key.id))
        .map(|key| {
            let values = matches
                .get_raw(&key.id)
                .into_iter()
                .flatten()
                .map(|v| FileValue {
                    text: v.to_string_lossy().into_owned(),
                    line: 0,
                })
                .collect();
            FileEntry {
                written: format!("--{}", key.name),
                flag: key.name.clone(),
                id: key.id.clone(),
                line: 0,
                setting: Setting::Values(values),
            }
        })
        .collect()
}

/// Where each setting of a configuration came from, to pin a refusal.
struct Sources<'a> {
    file: &'a ConfigFile,
    /// The file's keys in use (not overridden).
    applied: Vec<&'a FileEntry>,
    /// What the command line and the environment set.
    flags: Vec<FileEntry>,
}

impl Sources<'_> {
    /// A refused static backend that came from the file, at its line.
    fn backend_refusal(&self, index: usize, e: &PreflightError) -> Option<ConfigFileError> {
        let entry = self.applied.iter().find(|entry| entry.flag == "backend")?;
        let value = entry.values().get(index)?;
        Some(ConfigFileError::Keys(vec![KeyError {
            file: self.file.path.clone(),
            line: value.line,
            key: entry.written.clone(),
            message: e.to_string(),
        }]))
    }

    /// A refusal for the whole configuration, pinned to the key of the file
    /// it is about when it can tell: the first `--flag` the message names
    /// that the file set, or else the file value (or the part of one, such
    /// as a file name in `HOST=CERT,KEY`) that the message quotes, the
    /// longest such. A refusal about a flag of the command line is not the
    /// file's; one about nothing in particular names the file.
    fn refusal(&self, message: String) -> ConfigFileError {
        let flags: Vec<&FileEntry> = self.flags.iter().collect();
        if let Some((entry, line)) = by_flag(&self.applied, &message) {
            return self.pinned(entry, line, message);
        }
        if by_flag(&flags, &message).is_some() {
            return ConfigFileError::Flags(message);
        }
        let in_file = by_value(&self.applied, &message);
        let on_command_line = by_value(&flags, &message);
        match (in_file, on_command_line) {
            (Some((entry, line, a)), Some((_, _, b))) if a >= b => {
                self.pinned(entry, line, message)
            }
            (Some((entry, line, _)), None) => self.pinned(entry, line, message),
            (_, Some(_)) => ConfigFileError::Flags(message),
            (None, None) => ConfigFileError::File {
                path: self.file.path.clone(),
                message,
            },
        }
    }

    fn pinned(&self, entry: &FileEntry, line: usize, message: String) -> ConfigFileError {
        ConfigFileError::Keys(vec![KeyError {
            file: self.file.path.clone(),
            line,
            key: entry.written.clone(),
            message,
        }])
    }
}

fn by_flag<'a>(applied: &[&'a FileEntry], message: &str) -> Option<(&'a FileEntry, usize)> {
    message
        .match_indices("--")
        .map(|(i, _)| {
            let rest = &message[i + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .find_map(|flag| applied.iter().find(|e| e.flag == flag))
        .map(|e| (*e, e.line))
}

fn by_value<'a>(applied: &[&'a FileEntry], message: &str) -> Option<(&'a FileEntry, usize, usize)> {
    let mut best: Option<(&FileEntry, usize, usize)> = None;
    for entry in applied {
        for value in entry.values() {
            let whole = std::iter::once(value.text.as_str());
            let parts = value.text.split(['=', ',']);
            for needle in whole.chain(parts).map(str::trim) {
                if needle.len() >= 2
                    && message.contains(needle)
                    && best.is_none_or(|(_, _, len)| needle.len() > len)
                {
                    best = Some((entry, value.line, needle.len()));
                }
            }
        }
    }
    best
}

#[cfg(test)]
#[path = "config_load_tests.rs"]
mod tests;
