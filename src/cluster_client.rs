//! A client of a failover cluster: given the members' addresses, it finds the primary and
//! follows it across failovers.
//!
//! The primary is found by asking each member `ROLE`. A request a member refuses because it
//! is not the primary (`ERROR: READONLY: ...`, which names the primary when one is known) was
//! not applied, so it is sent again to the primary, found anew; so is a request whose
//! connection could not be opened. A connection that breaks after a request was sent is
//! reported, not retried: the request may or may not have been applied.

use std::time::{Duration, Instant};

use crate::client::{Client, ClientError, Credentials};
use crate::tls_client::ClientTls;

/// How long a request may look for a primary (an election takes about the failover timeout).
const FIND_PRIMARY: Duration = Duration::from_secs(10);
/// Pause between two rounds of asking the members, while an election is under way.
const RETRY: Duration = Duration::from_millis(100);

/// A connection to a cluster's primary, which moves with it.
pub struct ClusterClient {
    members: Vec<String>,
    connect_timeout: Duration,
    current: Option<(String, Client)>,
    /// What every connection logs in with, on members that ask for it.
    credentials: Option<Credentials>,
    /// TLS for every connection, if the members speak it.
    tls: Option<ClientTls>,
}

impl ClusterClient {
    /// A client of the cluster whose members are `members` (`host:port` each); connects to
    /// the primary on first use.
    pub fn new(members: Vec<String>, connect_timeout: Duration) -> ClusterClient {
        ClusterClient {
            members,
            connect_timeout,
            current: None,
            credentials: None,
            tls: None,
        }
    }

    /// Log every connection in with `credentials` (none: do not log in).
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> ClusterClient {
        self.credentials = credentials;
        self
    }

    /// Open every connection over TLS with `tls` (none: plain TCP).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> ClusterClient {
        self.tls = tls;
        self
    }

    /// The TLS connections are opened with, as given.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// What connections log in with, as given.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// The address of the primary this client talks to now, if it found one.
    pub fn primary(&self) -> Option<&str> {
        self.current.as_ref().map(|(addr, _)| addr.as_str())
    }

    /// The members' addresses, as given.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// How long opening a connection may take, as given.
    pub fn timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Send one request to the primary and answer its reply, following the primary while
    /// the request is refused as not applied.
    pub fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut replies = self.pipeline(&[line])?;
        replies.pop().ok_or(ClientError::Closed)
    }

    /// Send requests to the primary in one round trip and answer their replies, in order,
    /// following the primary while the first is refused as not applied (the others then go
    /// again with it: they are meant for the node that runs the first, as a `LASTPOS` after
    /// a write is). A connection that fails is dropped: the next request finds the primary
    /// anew.
    pub fn pipeline(&mut self, lines: &[&[u8]]) -> Result<Vec<Vec<u8>>, ClientError> {
        let deadline = Instant::now() + FIND_PRIMARY;
        let mut hint = None;
        loop {
            if self.current.is_none() {
                self.current = Some(self.find_primary(hint.take(), deadline)?);
            }
            let Some((addr, client)) = self.current.as_mut() else {
                continue;
            };
            let addr = addr.clone();
            let replies = match client.pipeline(lines) {
                Ok(replies) => replies,
                Err(error) => {
                    self.current = None;
                    return Err(error);
                }
            };
            let first = replies.first().map(Vec::as_slice).unwrap_or_default();
            match refused_for(first) {
                Some(next) if Instant::now() < deadline => {
                    // Not applied: find the primary (the one named, if any) and send again.
                    self.current = None;
                    hint = next.filter(|n| *n != addr);
                    std::thread::sleep(RETRY);
                }
                _ => return Ok(replies),
            }
        }
    }

    /// Connect to the primary: `hint` first, then whichever member says it is one.
    fn find_primary(
        &self,
        hint: Option<String>,
        deadline: Instant,
    ) -> Result<(String, Client), ClientError> {
        let mut last_error = None;
        loop {
            let candidates = hint.iter().chain(self.members.iter());
            for addr in candidates {
                let (tls, credentials) = (self.tls.as_ref(), self.credentials.as_ref());
                match Client::connect_with(addr, self.connect_timeout, tls, credentials) {
                    // Wrong credentials are wrong on every member: no use looking further.
                    Err(error @ ClientError::Auth(_)) => return Err(error),
                    Ok(mut client) => match client.request(b"ROLE") {
                        Ok(role) if role.starts_with(b"primary") => {
                            return Ok((addr.clone(), client))
                        }
                        Ok(_) => {}
                        Err(e) => last_error = Some(e),
                    },
                    Err(e) => last_error = Some(e),
                }
            }
            if Instant::now() >= deadline {
                return Err(last_error.unwrap_or_else(|| {
                    ClientError::Server(format!(
                        "no member of {} is the primary",
                        self.members.join(",")
                    ))
                }));
            }
            std::thread::sleep(RETRY);
        }
    }
}

/// Whether `reply` refuses a request as not applied because the node is not (or no longer)
/// the primary; with the primary it names, if it names one.
fn refused_for(reply: &[u8]) -> Option<Option<String>> {
    let text = std::str::from_utf8(reply).ok()?;
    let rest = text.strip_prefix("ERROR: READONLY: ")?;
    Some(
        rest.rsplit_once("write to the primary at ")
            .map(|(_, addr)| addr.trim().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::refused_for;

    #[test]
    fn a_refusal_names_the_primary_or_says_none_is_known() {
        assert_eq!(
            refused_for(
                b"ERROR: READONLY: this node is a replica; write to the primary at 10.0.0.2:7001"
            ),
            Some(Some("10.0.0.2:7001".into()))
        );
        assert_eq!(
            refused_for(b"ERROR: READONLY: no primary right now (an election is under way); not applied, retry shortly"),
            Some(None)
        );
        assert_eq!(refused_for(b"OK"), None);
        assert_eq!(refused_for(b"ERROR: persistence failed: disk"), None);
    }
}
