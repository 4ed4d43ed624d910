//! Client authentication: who may use a node, and what each user may do (issue 17).
//!
//! - [`rights`]: the three rights a user can hold (`read`, `write`, `admin`).
//! - [`password`]: how passwords are kept: Argon2id hashes in the users file, and a keyed
//!   digest of the one password the node is given in clear (`--requirepass`).
//! - [`users`]: the users file's format and the table of users it becomes.
//! - [`throttle`]: failed logins counted per client address, which slow that address's
//!   next logins down (node-wide, so new connections do not escape it).
//! - [`accounts`]: the node's users as every session sees them: replaced whole by a reload
//!   (`ACL LOAD`), and the password checks, which run off the node's threads.
//!
//! What a connection has proved (its user and rights) and the `NOAUTH`/`NOPERM` checks are
//! the session's: `server/auth.rs`. docs/security.md says what is protected and how to set it
//! up.

pub mod accounts;
pub mod password;
pub mod rights;
pub mod throttle;
pub mod users;
