//! TLS on every link of a node: the client port, the replication stream and the control
//! plane (docs/security.md). One file per concept:
//!
//! - [`files`]: the PEM files (`--tls-cert`, `--tls-key`, `--tls-ca`) and loading them, with
//!   errors that name the file and what is wrong;
//! - [`context`]: the reloadable state: the configs the node accepts and dials with, replaced
//!   whole by a reload, kept when a reload fails;
//! - [`stream`]: a connection that is plain or TLS, and its halves;
//! - [`accept`]: telling TLS clients from plain ones on a port and running the handshake;
//! - [`dial`]: connecting to a peer over TLS.
//!
//! rustls with the ring provider, passed to every config explicitly.

pub mod accept;
pub mod context;
pub mod dial;
pub mod files;
pub mod stream;

pub use context::{ClientAuth, TlsContext, TlsSettings};
pub use files::{TlsError, TlsFiles};
pub use stream::{ReadHalf, Stream, WriteHalf};
