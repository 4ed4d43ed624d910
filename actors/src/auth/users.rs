//! The users file, and the table of users a node checks logins against.
//!
//! The file (`--users-file`) has one user per line: its name, its rights, and the Argon2 hash
//! of its password as `kvnode hash-password` prints it, separated by blanks. Blank lines and
//! lines that start with `#` are skipped.
//!
//! ```text
//! # name    rights            password hash
//! app       read,write        $argon2id$v=19$m=19456,t=2,p=1$...$...
//! reports   read              $argon2id$v=19$m=19456,t=2,p=1$...$...
//! ops       all               $argon2id$v=19$m=19456,t=2,p=1$...$...
//! ```
//!
//! Names are 1 to 64 letters, digits and `_ . - @`; rights are `read`, `write` and `admin`,
//! comma-separated, or `all`. The user `default` is the one `AUTH <password>` (one argument)
//! logs in as; `--requirepass` defines it too (with every right), so a file read with
//! `--requirepass` must not. A file with any mistake is refused whole, with its line number:
//! at start-up the node does not start, and a reload keeps the users it had.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::password::{check_hash, Digest};
use super::rights::Rights;

/// The user `AUTH <password>` logs in as, and that `--requirepass` defines.
pub const DEFAULT_USER: &str = "default";

/// The longest user name.
const MAX_NAME: usize = 64;

/// One user: its name, its rights, and how its password is checked.
#[derive(Debug, Clone)]
pub struct User {
    /// Its name, as `AUTH` gives it.
    pub name: Arc<str>,
    /// What it may do.
    pub rights: Rights,
    /// How its password is checked.
    pub password: Password,
}

/// How a user's password is checked.
#[derive(Debug, Clone)]
pub enum Password {
    /// Against an Argon2 hash (a user of the users file).
    Hash(Arc<str>),
    /// Against a digest under the node's key (`--requirepass`'s `default` user).
    Digest(Digest),
}

/// Every user a node knows, and whether connections must log in at all.
#[derive(Debug, Default)]
pub struct Users {
    /// The users, by name.
    by_name: HashMap<Arc<str>, User>,
    /// Whether a connection must authenticate before it may do anything: set as soon as a
    /// password is configured (`--requirepass` or a users file, even an empty one).
    required: bool,
}

/// Why the users could not be read.
#[derive(Debug, Error)]
pub enum UsersError {
    /// The file could not be read.
    #[error("cannot read the users file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A line of the file is wrong.
    #[error("the users file {path}, line {line}: {why}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line's number, from 1.
        line: usize,
        /// What is wrong with it (never its hash).
        why: String,
    },
}

impl Users {
    /// No password anywhere: every connection may do everything, as before authentication
    /// existed.
    pub fn open() -> Users {
        Users::default()
    }

    /// The users of `--requirepass` (its digest: the `default` user, with every right) and of
    /// the users file, if there is one, read now (this blocks on the disk).
    pub fn read(requirepass: Option<Digest>, file: Option<&Path>) -> Result<Users, UsersError> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| UsersError::Read {
                        path: path.to_path_buf(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let at = |line, why| UsersError::Line {
            path: file.map(Path::to_path_buf).unwrap_or_default(),
            line,
            why,
        };
        let mut users = Users {
            by_name: HashMap::new(),
            required: requirepass.is_some() || file.is_some(),
        };
        if let Some(digest) = requirepass {
            let name: Arc<str> = DEFAULT_USER.into();
            let user = User {
                name: name.clone(),
                rights: Rights::ALL,
                password: Password::Digest(digest),
            };
            users.by_name.insert(name, user);
        }
        let mut lines_of = HashMap::new();
        for (number, line) in text.as_deref().unwrap_or_default().lines().enumerate() {
            let number = number + 1;
            let Some(user) = parse_line(line).map_err(|why| at(number, why))? else {
                continue;
            };
            if let Some(first) = lines_of.insert(user.name.clone(), number) {
                return Err(at(
                    number,
                    format!("`{}` is defined twice (line {first} too)", user.name),
                ));
            }
            if users.by_name.contains_key(&user.name) {
                let why = "the user `default` is --requirepass's already: give one or the other";
                return Err(at(number, why.into()));
            }
            users.by_name.insert(user.name.clone(), user);
        }
        Ok(users)
    }

    /// The user named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    /// Whether connections must log in.
    pub fn required(&self) -> bool {
        self.required
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there is no user.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Whether `name` can be a user's name: 1 to 64 letters, digits and `_ . - @` (so that it is
/// one word in the file and in the line protocol's `AUTH`).
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@');
    match !name.is_empty() && name.len() <= MAX_NAME && name.chars().all(valid) {
        true => Ok(()),
        false => Err(format!(
            "a user name is 1 to {MAX_NAME} letters, digits and `_ . - @`"
        )),
    }
}

/// One line of the users file: a user, or `None` for a blank line or a comment.
fn parse_line(line: &str) -> Result<Option<User>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let [name, rights, hash] = words[..] else {
        return Err(format!(
            "expected `<name> <rights> <password hash>`, found {} words",
            words.len()
        ));
    };
    check_name(name)?;
    let rights = Rights::parse(rights)?;
    check_hash(hash).map_err(|e| e.to_string())?;
    Ok(Some(User {
        name: name.into(),
        rights,
        password: Password::Hash(hash.into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::{hash, DigestKey};

    /// A users file with `text`, in a directory of its own.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_users_file_gives_each_user_its_rights() {
        let hashed = hash(b"pw").unwrap();
        let text = format!("# users\n\napp read,write {hashed}\n  ops all {hashed}  \n");
        let (_dir, path) = file(&text);
        let users = Users::read(None, Some(&path)).unwrap();
        assert!(users.required());
        assert_eq!(users.len(), 2);
        assert_eq!(
            users.get("app").unwrap().rights,
            Rights::READ.and(Rights::WRITE)
        );
        assert_eq!(users.get("ops").unwrap().rights, Rights::ALL);
        assert!(users.get("default").is_none());
        assert!(!Users::open().required());
    }

    #[test]
    fn requirepass_is_the_default_user_with_every_right() {
        let key = DigestKey::random();
        let users = Users::read(Some(key.digest(b"pw")), None).unwrap();
        let default = users.get(DEFAULT_USER).unwrap();
        assert_eq!(default.rights, Rights::ALL);
        assert!(matches!(&default.password, Password::Digest(d) if key.matches(b"pw", d)));
        // An empty users file still means passwords are required.
        let (_dir, path) = file("# nobody yet\n");
        assert!(Users::read(None, Some(&path)).unwrap().required());
    }

    #[test]
    fn a_wrong_line_is_refused_with_its_number() {
        let hashed = hash(b"pw").unwrap();
        let key = DigestKey::random();
        let cases = [
            (
                format!("app read {hashed}\napp write {hashed}\n"),
                2,
                "defined twice",
            ),
            ("app read\n".to_string(), 1, "found 2 words"),
            (format!("a:b read {hashed}\n"), 1, "user name"),
            (format!("\napp root {hashed}\n"), 2, "unknown right"),
            ("app read plaintext\n".to_string(), 1, "not an Argon2 hash"),
        ];
        for (text, number, why) in cases {
            let (_dir, path) = file(&text);
            match Users::read(None, Some(&path)) {
                Err(UsersError::Line {
                    line, why: text, ..
                }) => {
                    assert_eq!(line, number, "{text}");
                    assert!(text.contains(why), "{text}");
                    assert!(!text.contains(&hashed), "{text}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let (_dir, path) = file(&format!("default read {hashed}\n"));
        let twice = Users::read(Some(key.digest(b"pw")), Some(&path)).unwrap_err();
        assert!(twice.to_string().contains("--requirepass"), "{twice}");
        let missing = Users::read(None, Some(Path::new("/nonexistent/users"))).unwrap_err();
        assert!(matches!(missing, UsersError::Read { .. }), "{missing}");
    }
}
