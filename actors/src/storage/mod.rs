//! Everything a node keeps on disk, and the actor that writes it.
//!
//! - [`writer`]: the persistence writer actor: appends every mutation the Store publishes to the
//!   log (group commit, the `--fsync` policy), reports durability, compacts into snapshots;
//!   [`writer_messages`]: its configuration and the messages it takes.
//! - [`durability`]: the `--fsync` policy and the durable position the writer publishes.
//! - [`record`]: the record format shared by the log, snapshots and the replication stream.
//! - [`segment`]: one log file being appended to.
//! - [`snapshot_file`]: writing and reading a snapshot file.
//! - [`syncer`]: the fsync thread, which syncs the log while the writer goes on appending.
//! - [`data_dir`]: the data directory: file names, its lock, storage errors.
//! - [`recovery`]: rebuilding the data from a data directory at start-up.

pub mod data_dir;
pub mod durability;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod snapshot_file;
pub mod syncer;
pub mod writer;
pub mod writer_messages;
