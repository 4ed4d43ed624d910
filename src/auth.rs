//! `kvnode`'s client authentication flags (`--requirepass`, `--requirepass-file`,
//! `KVSTORE_REQUIREPASS`, `--users-file`), what they become, and `kvnode hash-password`, which
//! makes the password hashes of the users file. docs/security.md is the guide.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kv_actors::auth::password::{self, PasswordError};
use kv_actors::auth::rights::Rights;
use kv_actors::auth::users::check_name;

/// The environment variable `--requirepass` is read from when the flag is not given: unlike a
/// flag, it does not show in `ps`.
pub const REQUIREPASS_ENV: &str = "KVSTORE_REQUIREPASS";

/// A password given to the node: never shown (its `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(
    /// The password.
    String,
);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl FromStr for Password {
    type Err = String;

    /// Any non-empty text (an empty `--requirepass` would read as "no password").
    fn from_str(text: &str) -> Result<Password, String> {
        match text.is_empty() {
            true => Err("the password is empty".into()),
            false => Ok(Password(text.to_string())),
        }
    }
}

impl Password {
    /// The password's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The authentication flags of a serving node.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Clients must log in with this password (`AUTH <password>`, redis-cli -a) before
    /// anything else, as Redis's requirepass; it logs them in as the user `default`, with every
    /// right. A flag shows in `ps`: prefer --requirepass-file or the KVSTORE_REQUIREPASS
    /// environment variable.
    #[arg(long, value_name = "PASSWORD", env = REQUIREPASS_ENV, hide_env_values = true)]
    pub requirepass: Option<Password>,

    /// As --requirepass, from the first line of this file (keep it readable by the node's user
    /// only).
    #[arg(long, value_name = "FILE", conflicts_with = "requirepass")]
    pub requirepass_file: Option<PathBuf>,

    /// Named users, each with its rights (read, write, admin) and the Argon2 hash of its
    /// password (`kvnode hash-password` makes them): clients log in with `AUTH <user>
    /// <password>`. Read at start-up, and again by `ACL LOAD`. Format: docs/security.md.
    #[arg(long, value_name = "FILE")]
    pub users_file: Option<PathBuf>,
}

/// The authentication a node is started with.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `--requirepass`, from the flag, its file or its environment variable.
    pub requirepass: Option<Password>,
    /// `--users-file`.
    pub users_file: Option<PathBuf>,
}

/// Why the authentication flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("--requirepass-file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("--requirepass-file {0}: its first line is empty")]
    Empty(PathBuf),
}

impl AuthArgs {
    /// The flags resolved: the password read from its file, if it comes from one.
    pub fn resolve(self) -> Result<AuthConfig, AuthConfigError> {
        let requirepass = match (&self.requirepass_file, self.requirepass) {
            (Some(path), _) => Some(read_password_file(path)?),
            (None, given) => given,
        };
        Ok(AuthConfig {
            requirepass,
            users_file: self.users_file,
        })
    }
}

/// The first line of `path`, without its line ending.
fn read_password_file(path: &Path) -> Result<Password, AuthConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let line = text.lines().next().unwrap_or_default();
    line.parse()
        .map_err(|_| AuthConfigError::Empty(path.to_path_buf()))
}

/// Why a file holding passwords or their hashes deserves a warning: others may read it (a
/// hash can still be attacked offline).
#[cfg(unix)]
pub fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// Why a file holding passwords or their hashes deserves a warning (never, where file modes
/// do not say).
#[cfg(not(unix))]
pub fn readable_by_others(_path: &Path) -> bool {
    false
}

/// `kvnode hash-password`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct HashPasswordArgs {
    /// Print a whole line of the users file for this user, not just the hash.
    #[arg(long, value_name = "NAME", requires = "rights", value_parser = user_name)]
    pub user: Option<String>,
    /// The user's rights, with --user: read, write and admin, comma-separated, or all.
    #[arg(long, value_name = "RIGHTS", requires = "user", value_parser = rights)]
    pub rights: Option<String>,
}

/// `--user`: a name the users file accepts.
fn user_name(text: &str) -> Result<String, String> {
    check_name(text).map(|()| text.to_string())
}

/// `--rights`: rights the users file accepts, as given.
fn rights(text: &str) -> Result<String, String> {
    Rights::parse(text).map(|_| text.to_string())
}

/// Why no hash could be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot read the password: {0}")]
    Read(#[from] io::Error),
    #[error("the password is empty")]
    Empty,
    #[error(transparent)]
    Hash(#[from] PasswordError),
}

/// `kvnode hash-password`: read a password (without echoing it, from a terminal; else the first
/// line of stdin) and answer its hash, or the users file's line for `--user`.
pub fn hash_password(args: &HashPasswordArgs) -> Result<String, HashError> {
    let password = read_password()?;
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    let hash = password::hash(password.as_bytes())?;
    Ok(match (&args.user, &args.rights) {
        (Some(user), Some(rights)) => format!("{user} {rights} {hash}"),
        _ => hash,
    })
}

/// The password, from the terminal with its echo off, or the first line of stdin.
fn read_password() -> io::Result<String> {
    let stdin = io::stdin();
    let quiet = match stdin.is_terminal() {
        true => {
            eprint!("Password (not shown): ");
            io::stderr().flush()?;
            Some(NoEcho::start())
        }
        false => None,
    };
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if quiet.is_some() {
        eprintln!();
    }
    drop(quiet);
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// The terminal's echo, off while it lives.
struct NoEcho(
    /// The terminal's settings before, put back on drop; `None` if they could not be read.
    Option<libc::termios>,
);

impl NoEcho {
    fn start() -> NoEcho {
        // SAFETY: `termios` is plain data that tcgetattr fills; both calls only read and set
        // the settings of stdin's terminal.
        unsafe {
            let mut settings: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut settings) != 0 {
                return NoEcho(None);
            }
            let mut quiet = settings;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet);
            NoEcho(Some(settings))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(settings) = &self.0 {
            // SAFETY: puts back the settings tcgetattr read.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, settings);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirepass_comes_from_its_file_without_the_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "s3cret pass\r\nignored\n").unwrap();
        let args = AuthArgs {
            requirepass: None,
            requirepass_file: Some(path.clone()),
            users_file: None,
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.requirepass.unwrap().as_bytes(), b"s3cret pass");
        std::fs::write(&path, "\n").unwrap();
        let args = AuthArgs {
            requirepass: None,
            requirepass_file: Some(path),
            users_file: None,
        };
        assert!(matches!(args.resolve(), Err(AuthConfigError::Empty(_))));
        assert!("".parse::<Password>().is_err());
        assert_eq!(
            format!("{:?}", "pw".parse::<Password>().unwrap()),
            "Password(..)"
        );
    }
}
