//! Why a `wslb serve` configuration (flags and `--config` file) was refused:
//! each problem names the file, the line and the key when it came from the
//! file. Exit codes: 2 for a file that cannot be read or is not TOML, 1 for
//! a configuration that is refused.

use std::fmt;
use std::path::PathBuf;

/// One refused key of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError {
    /// The file.
    pub(crate) file: PathBuf,
    /// The line of the key or value (1-based).
    pub(crate) line: usize,
    /// The key as written in the file.
    pub(crate) key: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.key,
            self.message
        )
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigFileError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped (1-based).
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// Keys of the file refused (unknown keys, bad values, a value that
    /// does not work): every one found, in file order.
    #[error("{}", lines(.0))]
    Keys(Vec<KeyError>),
    /// The configuration from the file is refused for a reason no single
    /// key of the file carries (e.g. nothing to listen on).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the flags).
        message: String,
    },
    /// The command line alone is refused (no file given).
    #[error("invalid configuration: {0}")]
    Flags(String),
}

fn lines(errors: &[KeyError]) -> String {
    let all: Vec<String> = errors.iter().map(KeyError::to_string).collect();
    all.join("\n")
}

impl ConfigFileError {
    /// The process exit code for this error: 2 when the file cannot be read
    /// or is not TOML, 1 otherwise.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ConfigFileError::Read { .. } | ConfigFileError::Syntax { .. } => 2,
            _ => 1,
        }
    }
}

/// The 1-based line of a byte offset in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_codes() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
        let e = KeyError {
            file: "wslb.toml".into(),
            line: 12,
            key: "max-conections".into(),
            message: "unknown key (did you mean max-connections?)".into(),
        };
        assert_eq!(
            e.to_string(),
            "wslb.toml:12: max-conections: unknown key (did you mean max-connections?)"
        );
        let two = ConfigFileError::Keys(vec![e.clone(), e]);
        assert_eq!(two.to_string().lines().count(), 2);
        assert_eq!(two.exit_code(), 1);
        let syntax = ConfigFileError::Syntax {
            path: "w.toml".into(),
            line: 1,
            message: "x".into(),
        };
        assert_eq!(syntax.exit_code(), 2);
    }
}
