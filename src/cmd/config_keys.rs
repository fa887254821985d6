//! The configuration file's keys, read from clap's own definition of
//! `wslb serve`: every long flag is a key of the same name, with the flag's
//! value parser, so a flag added to `ServeArgs` is a key at once and the
//! file accepts exactly what the flag accepts.

use clap::{ArgAction, Command, CommandFactory};

use crate::cmd::cli::Cli;

/// The flag that names the file: not a key of the file itself.
pub(crate) const CONFIG_FLAG: &str = "config";

/// How many values a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A flag without a value (`--no-pin`): `true` or `false` in the file.
    Switch,
    /// One value (`--max-connections 9000`).
    One,
    /// A repeatable flag (`--backend A --backend B`): an array (or one value).
    Many,
}

/// One key of the file: a `wslb serve` flag.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    /// The long flag name, which is the key (`max-connections`).
    pub(crate) name: String,
    /// clap's id of the argument (to ask where its value came from).
    pub(crate) id: String,
    /// How many values it takes.
    pub(crate) shape: Shape,
}

/// The `wslb` command, built (global flags propagated, help flags added),
/// as clap parses the process's command line.
pub(crate) fn cli_command() -> Command {
    let mut cli = Cli::command();
    cli.build();
    cli
}

/// The `serve` subcommand of a built [`cli_command`].
pub(crate) fn serve_command(cli: &Command) -> Option<&Command> {
    cli.find_subcommand("serve")
}

/// Every key of the file: the long flags of `wslb serve` (the global
/// ones, `--log-level` and `--log-format`, included), without `--help` and
/// `--config` itself.
pub(crate) fn serve_keys(serve: &Command) -> Vec<Key> {
    serve
        .get_arguments()
        .filter_map(|arg| {
            let name = arg.get_long()?;
            let shape = match arg.get_action() {
                ArgAction::SetTrue => Shape::Switch,
                ArgAction::Append => Shape::Many,
                ArgAction::Set => Shape::One,
                _ => return None,
            };
            (name != CONFIG_FLAG).then(|| Key {
                name: name.to_string(),
                id: arg.get_id().to_string(),
                shape,
            })
        })
        .collect()
}

/// What a name in the file means: a key, and whether its boolean is
/// inverted (`pin = false` is `no-pin = true`).
pub(crate) fn lookup<'k>(keys: &'k [Key], name: &str) -> Option<(&'k Key, bool)> {
    if let Some(key) = keys.iter().find(|k| k.name == name) {
        return Some((key, false));
    }
    let negated = format!("no-{name}");
    keys.iter()
        .find(|k| k.shape == Shape::Switch && k.name == negated)
        .map(|k| (k, true))
}

/// The key closest to a misspelt name, when one is close enough to be a
/// likely typo.
pub(crate) fn suggest<'k>(keys: &'k [Key], name: &str) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    keys.iter()
        .map(|k| (edit_distance(&k.name, name), k.name.as_str()))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Key> {
        let cli = cli_command();
        serve_keys(serve_command(&cli).expect("serve subcommand"))
    }

    #[test]
    fn every_long_serve_flag_is_a_key() {
        let keys = keys();
        let shape = |n: &str| keys.iter().find(|k| k.name == n).map(|k| k.shape);
        assert_eq!(shape("max-connections"), Some(Shape::One));
        assert_eq!(shape("backend"), Some(Shape::Many));
        assert_eq!(shape("listen"), Some(Shape::Many));
        assert_eq!(shape("allowed-origins"), Some(Shape::Many));
        assert_eq!(shape("no-pin"), Some(Shape::Switch));
        assert_eq!(shape("admin-token"), Some(Shape::One));
        assert_eq!(shape("log-level"), Some(Shape::One));
        assert_eq!(shape("log-format"), Some(Shape::One));
        for absent in ["config", "help"] {
            assert_eq!(shape(absent), None, "{absent}");
        }
        // As many keys as the help shows long flags, less those two.
        let cli = cli_command();
        let serve = serve_command(&cli).expect("serve");
        let longs = serve.get_arguments().filter(|a| a.get_long().is_some());
        assert_eq!(keys.len(), longs.count() - 2);
    }

    #[test]
    fn negated_switches_and_suggestions() {
        let keys = keys();
        let (key, inverted) = lookup(&keys, "pin").expect("pin");
        assert_eq!((key.name.as_str(), inverted), ("no-pin", true));
        assert!(lookup(&keys, "max-connections").is_some_and(|(_, inv)| !inv));
        assert!(lookup(&keys, "workers-count").is_none());
        assert_eq!(suggest(&keys, "max-conections"), Some("max-connections"));
        assert_eq!(suggest(&keys, "backends"), Some("backend"));
        assert_eq!(suggest(&keys, "zzzzzzzz"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
