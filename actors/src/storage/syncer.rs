//! The fsync thread: the one place a node waits for its disk.
//!
//! The writer runs on the Store's thread and hands what it appends to the operating system
//! there (a `write` to the page cache, as Redis writes its AOF from its event loop), so a
//! batch of requests is applied, logged and answered in one turn of that thread, with no
//! hop to another thread and back. An `fdatasync` takes as long as the disk wants (about
//! 0.4 ms here, seconds on a stalled disk), so it runs on this thread instead: the writer
//! asks for one ([`SyncJob`]) and is told when it is done ([`Synced`]). Meanwhile the writer
//! goes on appending, so under `--fsync always` the next group of writes is already in the
//! file when the running `fdatasync` ends, and the next one covers all of it.
//!
//! One job runs at a time, in the order asked. A job names the file, how far it reached and
//! the last mutation in it when the job was asked for: an `fdatasync` covers every byte
//! written to the file before it started.

use std::fs::File;
use std::io;
use std::sync::mpsc;
use std::sync::Arc;

use actix::prelude::*;

use crate::store::Seq;

/// One `fdatasync` to run.
pub struct SyncJob {
    /// The log file to sync.
    pub file: Arc<File>,
    /// The last mutation written to it when the job was asked for: durable once it succeeds.
    pub seq: Seq,
    /// The file's length then: every byte before it is durable once it succeeds.
    pub len: u64,
    /// Which of the writer's files and histories the job belongs to: a result for one the
    /// writer has since replaced or cut back is ignored.
    pub epoch: u64,
}

/// A job done: sent back to the writer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Synced {
    /// The job's last mutation.
    pub seq: Seq,
    /// The job's file length.
    pub len: u64,
    /// The job's epoch.
    pub epoch: u64,
    /// Whether the `fdatasync` succeeded.
    pub result: io::Result<()>,
}

/// The writer's end of the fsync thread. Dropping it ends the thread once the job it is
/// running (if any) is done.
pub struct Syncer {
    jobs: mpsc::Sender<SyncJob>,
}

impl Syncer {
    /// Start the thread; it tells `done` of every job.
    pub fn start(done: Recipient<Synced>) -> io::Result<Syncer> {
        let (jobs, queue) = mpsc::channel::<SyncJob>();
        std::thread::Builder::new()
            .name("kv-fsync".into())
            .spawn(move || {
                for job in queue {
                    let result = job.file.sync_data();
                    done.do_send(Synced {
                        seq: job.seq,
                        len: job.len,
                        epoch: job.epoch,
                        result,
                    });
                }
            })?;
        Ok(Syncer { jobs })
    }

    /// Ask for a job; answers it back if the thread is gone (it never ends while this handle
    /// lives, short of a panic), so that the caller can sync in place instead.
    pub fn submit(&self, job: SyncJob) -> Result<(), SyncJob> {
        self.jobs.send(job).map_err(|error| error.0)
    }
}
