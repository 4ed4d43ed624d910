//! The node's users as every session sees them, and the checks of logins against them.
//!
//! One [`Accounts`] per node, shared by its sessions. The users in force are replaced whole by
//! a reload (`ACL LOAD`), which bumps a generation number: a session notices it at its next
//! batch and looks its user up again, so a reload takes rights away from connections already
//! logged in (and logs out those whose user is gone).
//!
//! A login is checked without blocking the node's threads: an Argon2 check (tens of
//! milliseconds of work) runs on the runtime's blocking pool, at most [`HASHING_AT_ONCE`] at a
//! time, since each allocates the hash's memory. Once a user's password has passed its Argon2
//! check, a digest of it is remembered (under the node's random key, never written anywhere),
//! so that the next logins of that user cost a digest, not another Argon2 check: clients that
//! open many connections (a pool, a benchmark) log in at once. The remembered digests are
//! forgotten at every reload.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Semaphore;

use super::password::{self, Digest, DigestKey};
use super::rights::Rights;
use super::throttle::LoginThrottle;
use super::users::{Password, Users, UsersError, DEFAULT_USER};

/// The most Argon2 checks running at once, node-wide: each takes a thread of the blocking pool
/// and the hash's memory (19 MiB by default), so a flood of logins cannot take the node's
/// memory or every core.
pub const HASHING_AT_ONCE: usize = 2;

/// The most logins waiting for an Argon2 check at once, node-wide: past it a login is answered
/// that the node is busy, so a flood of wrong passwords cannot make a real first login wait
/// for minutes.
pub const HASHING_QUEUE: usize = 32;

/// Who a connection is, once it has logged in (or from the start, on a node without
/// passwords).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's name.
    pub user: Arc<str>,
    /// What the user may do.
    pub rights: Rights,
    /// The generation of the users this was read from (see [`Accounts::refresh`]).
    pub generation: u64,
}

/// What a login attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right: the connection is this user now.
    Accepted(Identity),
    /// No such user, or the wrong password (the client is not told which).
    Refused,
    /// `AUTH <password>` on a node that has no password (Redis answers it with an error).
    NotConfigured,
    /// Not checked: too many logins are waiting for a password check already.
    Busy,
}

/// Why the users could not be read again.
#[derive(Debug, Error)]
pub enum ReloadError {
    /// The node was started without `--users-file`.
    #[error("no users file is configured (start the node with --users-file)")]
    NoFile,
    /// The file is wrong or unreadable; the users in force stay as they were.
    #[error("{0}; the users in force are unchanged")]
    Users(#[from] UsersError),
    /// The thread that reads it could not run (the node is stopping).
    #[error("the node is stopping")]
    Stopped,
}

/// A node's users, and the checks of logins against them.
pub struct Accounts {
    /// `--requirepass`'s digest, kept for reloads (the file is read again, the flag is not).
    requirepass: Option<Digest>,
    /// The users file, read again by a reload.
    file: Option<PathBuf>,
    /// The users in force.
    users: RwLock<Arc<Users>>,
    /// How many times the users were replaced.
    generation: AtomicU64,
    /// The key of every digest the node keeps.
    key: DigestKey,
    /// By user, the digest of the password that last passed its Argon2 check (see the
    /// module's documentation).
    verified: Mutex<HashMap<Arc<str>, Digest>>,
    /// Permits for Argon2 checks ([`HASHING_AT_ONCE`]).
    hashing: Semaphore,
    /// Logins waiting for (or in) an Argon2 check now.
    queued: AtomicUsize,
    /// Failed logins by client address (`auth/throttle.rs`).
    pub throttle: LoginThrottle,
    /// Held by a reload from reading the file to putting it in force: two `ACL LOAD`s at once
    /// cannot leave the older file in force.
    reloading: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("required", &self.required())
            .field("file", &self.file)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Default for Accounts {
    /// A node without passwords.
    fn default() -> Self {
        Accounts::build(None, None, Users::open(), DigestKey::random())
    }
}

impl Accounts {
    fn build(
        requirepass: Option<Digest>,
        file: Option<PathBuf>,
        users: Users,
        key: DigestKey,
    ) -> Accounts {
        Accounts {
            requirepass,
            file,
            users: RwLock::new(Arc::new(users)),
            generation: AtomicU64::new(0),
            key,
            verified: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(HASHING_AT_ONCE),
            reloading: tokio::sync::Mutex::new(()),
            queued: AtomicUsize::new(0),
            throttle: LoginThrottle::default(),
        }
    }

    /// The accounts of `--requirepass` (the `default` user, with every right) and of the users
    /// file, read now (at start-up: this blocks on the disk). Neither: no passwords.
    pub fn new(requirepass: Option<&[u8]>, file: Option<PathBuf>) -> Result<Accounts, UsersError> {
        let key = DigestKey::random();
        let requirepass = requirepass.map(|password| key.digest(password));
        let users = Users::read(requirepass, file.as_deref())?;
        Ok(Accounts::build(requirepass, file, users, key))
    }

    /// The users in force now.
    pub fn users(&self) -> Arc<Users> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether connections must log in.
    pub fn required(&self) -> bool {
        self.users().required()
    }

    /// The users file, if the node has one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// How many times the users were replaced: a session compares it with its identity's.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Who a new connection is: the `default` user with every right on a node without
    /// passwords; nobody (it must log in) otherwise.
    pub fn initial(&self) -> Option<Identity> {
        let generation = self.generation();
        (!self.required()).then(|| Identity {
            user: DEFAULT_USER.into(),
            rights: Rights::ALL,
            generation,
        })
    }

    /// `identity` as the users in force say it is now: its rights as they are, or `None` when
    /// its user is gone.
    pub fn refresh(&self, identity: &Identity) -> Option<Identity> {
        let generation = self.generation();
        let users = self.users();
        let rights = match users.required() {
            true => users.get(&identity.user)?.rights,
            false => Rights::ALL,
        };
        Some(Identity {
            user: identity.user.clone(),
            rights,
            generation,
        })
    }

    /// Check a login: `user` (none: `default`) with `password`, against the users in force
    /// when the check ends: one that a reload overtook (the password may have changed while
    /// Argon2 ran) is checked again.
    pub async fn verify(self: Arc<Self>, user: Option<Bytes>, password: Bytes) -> Verdict {
        loop {
            let generation = self.generation();
            let verdict = self
                .clone()
                .verify_once(user.clone(), password.clone())
                .await;
            if self.generation() == generation {
                return verdict;
            }
        }
    }

    /// [`Self::verify`] against the users in force when it starts.
    async fn verify_once(self: Arc<Self>, user: Option<Bytes>, password: Bytes) -> Verdict {
        let generation = self.generation();
        let users = self.users();
        let name = user.as_deref().unwrap_or(DEFAULT_USER.as_bytes());
        if !users.required() {
            // Redis's answers on a node whose `default` user has no password.
            return match (&user, name == DEFAULT_USER.as_bytes()) {
                (None, _) => Verdict::NotConfigured,
                (Some(_), true) => Verdict::Accepted(Identity {
                    user: DEFAULT_USER.into(),
                    rights: Rights::ALL,
                    generation,
                }),
                (Some(_), false) => Verdict::Refused,
            };
        }
        let Some(entry) = std::str::from_utf8(name).ok().and_then(|n| users.get(n)) else {
            return Verdict::Refused;
        };
        let right = match &entry.password {
            Password::Digest(digest) => self.key.matches(&password, digest),
            Password::Hash(hash) => match self
                .check_hash(&entry.name, hash, password, generation)
                .await
            {
                Some(right) => right,
                None => return Verdict::Busy,
            },
        };
        match right {
            true => Verdict::Accepted(Identity {
                user: entry.name.clone(),
                rights: entry.rights,
                generation,
            }),
            false => Verdict::Refused,
        }
    }

    /// Check `password` against `user`'s Argon2 `hash` (of the users of `generation`): against
    /// the remembered digest if its password passed before, else with Argon2, off this thread.
    async fn check_hash(
        &self,
        user: &Arc<str>,
        hash: &Arc<str>,
        password: Bytes,
        generation: u64,
    ) -> Option<bool> {
        if let Some(digest) = self.remembered(user) {
            return Some(self.key.matches(&password, &digest));
        }
        // Counted while it waits or runs (a client that leaves drops the future and its place).
        let _place = Queued::enter(&self.queued)?;
        let Ok(_permit) = self.hashing.acquire().await else {
            return Some(false);
        };
        // Another login of the same user may have been checked while this one waited.
        if let Some(digest) = self.remembered(user) {
            return Some(self.key.matches(&password, &digest));
        }
        let (hash, checked) = (hash.clone(), password.clone());
        let right = tokio::task::spawn_blocking(move || password::verify(&hash, &checked))
            .await
            .unwrap_or(false);
        if right {
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            // Not if the users were reloaded meanwhile: the hash checked may be gone.
            if self.generation() == generation {
                verified.insert(user.clone(), self.key.digest(&password));
            }
        }
        Some(right)
    }

    /// The digest of `user`'s password, if it passed its Argon2 check since the last reload.
    fn remembered(&self, user: &str) -> Option<Digest> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified.get(user).copied()
    }

    /// Read the users file again and put its users in force (`ACL LOAD`); answers how many
    /// users there are now. A file with a mistake changes nothing.
    pub async fn reload(self: Arc<Self>) -> Result<usize, ReloadError> {
        let Some(file) = self.file.clone() else {
            return Err(ReloadError::NoFile);
        };
        let _turn = self.reloading.lock().await;
        let requirepass = self.requirepass;
        let read = tokio::task::spawn_blocking(move || Users::read(requirepass, Some(&file)));
        let users = read.await.map_err(|_| ReloadError::Stopped)??;
        let count = users.len();
        // In this order, under the digests' lock: a check that read the old users cannot
        // remember a digest once the new ones are in force.
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(users);
        self.generation.fetch_add(1, Ordering::AcqRel);
        verified.clear();
        Ok(count)
    }
}

/// A login's place among those waiting for an Argon2 check, given back when it is dropped.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    /// A place, if fewer than [`HASHING_QUEUE`] are taken.
    fn enter(queued: &'a AtomicUsize) -> Option<Queued<'a>> {
        let taken = queued.fetch_add(1, Ordering::AcqRel);
        let place = Queued(queued);
        (taken < HASHING_QUEUE).then_some(place)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::hash;

    fn accounts(requirepass: Option<&[u8]>, file: &str) -> (tempfile::TempDir, Arc<Accounts>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, file).unwrap();
        let accounts = Accounts::new(requirepass, Some(path)).unwrap();
        (dir, Arc::new(accounts))
    }

    fn b(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    #[actix_rt::test]
    async fn a_login_overtaken_by_a_reload_is_checked_against_the_new_users() {
        let line = format!("app read,write {}\n", hash(b"old-pw").unwrap());
        let (dir, accounts) = accounts(None, &line);
        // Every Argon2 permit taken: the login waits for its check, the old users in hand.
        let permits = accounts
            .hashing
            .acquire_many(HASHING_AT_ONCE as u32)
            .await
            .unwrap();
        let login = actix_rt::spawn(accounts.clone().verify(Some(b("app")), b("old-pw")));
        while accounts.queued.load(Ordering::Acquire) == 0 {
            actix_rt::task::yield_now().await;
        }
        // The file changes the password while the old one waits to be checked.
        let line = format!("app read,write {}\n", hash(b"new-pw").unwrap());
        std::fs::write(dir.path().join("users"), line).unwrap();
        accounts.clone().reload().await.unwrap();
        drop(permits);
        assert_eq!(login.await.unwrap(), Verdict::Refused);
    }

    #[actix_rt::test]
    async fn logins_are_checked_against_the_users_in_force() {
        let line = format!("app read,write {}\n", hash(b"app-pw").unwrap());
        let (dir, accounts) = accounts(Some(b"root-pw"), &line);
        assert_eq!(accounts.initial(), None);
        let verify = |user: Option<&str>, pw: &str| accounts.clone().verify(user.map(b), b(pw));
        let Verdict::Accepted(root) = verify(None, "root-pw").await else {
            panic!("requirepass")
        };
        assert_eq!((&*root.user, root.rights), ("default", Rights::ALL));
        assert_eq!(verify(Some("default"), "nope").await, Verdict::Refused);
        let Verdict::Accepted(app) = verify(Some("app"), "app-pw").await else {
            panic!("app")
        };
        assert_eq!(app.rights, Rights::READ.and(Rights::WRITE));
        // Twice: the second check is against the remembered digest.
        assert!(matches!(
            verify(Some("app"), "app-pw").await,
            Verdict::Accepted(_)
        ));
        assert_eq!(verify(Some("app"), "app-pw ").await, Verdict::Refused);
        assert_eq!(verify(Some("nobody"), "app-pw").await, Verdict::Refused);

        // A reload takes away what the file no longer grants.
        let line = format!("app read {}\n", hash(b"new-pw").unwrap());
        std::fs::write(dir.path().join("users"), line).unwrap();
        assert_eq!(accounts.clone().reload().await.unwrap(), 2);
        assert_eq!(accounts.refresh(&app).map(|i| i.rights), Some(Rights::READ));
        assert_eq!(verify(Some("app"), "app-pw").await, Verdict::Refused);
        assert!(matches!(
            verify(Some("app"), "new-pw").await,
            Verdict::Accepted(_)
        ));
        std::fs::write(dir.path().join("users"), "app sideways x\n").unwrap();
        assert!(matches!(
            accounts.clone().reload().await,
            Err(ReloadError::Users(_))
        ));
        assert!(matches!(
            verify(Some("app"), "new-pw").await,
            Verdict::Accepted(_)
        ));
        std::fs::write(dir.path().join("users"), "").unwrap();
        accounts.clone().reload().await.unwrap();
        assert_eq!(accounts.refresh(&app), None);
    }

    #[actix_rt::test]
    async fn a_node_without_passwords_answers_as_redis_does() {
        let accounts = Arc::new(Accounts::default());
        assert_eq!(accounts.initial().map(|i| i.rights), Some(Rights::ALL));
        assert_eq!(
            accounts.clone().verify(None, b("x")).await,
            Verdict::NotConfigured
        );
        let default = accounts.clone().verify(Some(b("default")), b("x")).await;
        assert!(matches!(default, Verdict::Accepted(_)));
        assert_eq!(
            accounts.clone().verify(Some(b("app")), b("x")).await,
            Verdict::Refused
        );
        assert!(matches!(accounts.reload().await, Err(ReloadError::NoFile)));
    }
}
