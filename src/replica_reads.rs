//! Reads from replicas that still show a client its own writes (read-your-writes) and never
//! go back in time (monotonic reads), with position tokens (`LASTPOS`, `GET ... AFTER`).
//!
//! [`ReplicaReadClient`] holds a connection to the primary and one to each replica (opened on
//! first use). Every request that goes to the primary is followed, in the same round trip, by
//! `LASTPOS`, and the client keeps the newest token it was given: the position of its writes.
//! Every `GET` goes to a replica as `GET key AFTER <token> <ms>`, also followed by `LASTPOS`,
//! so the token moves past whatever a read showed as well: a later read on another replica
//! shows at least as much as this one did.
//!
//! A read never shows data older than the token and never hangs: a replica that does not
//! reach the token within the client's wait (`TIMEOUT`), whose history does not hold it
//! (`NOHISTORY`), that refuses the read for another reason, or whose connection fails or
//! stays silent past the wait, is passed over, and the read goes to the next replica and
//! finally to the primary, which has every write it acknowledged.
//!
//! Which replica: each client sticks to one, moving on only when it fails, rather than
//! spreading its reads round-robin. The token carries the newest position any read showed,
//! so round-robin would make a read wait for the replica it lands on to catch up with the
//! fastest one the previous read used; a replica always has what it showed itself, so a
//! sticky client waits only for its own writes. Load still spreads across replicas, since
//! clients start on different ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::PositionToken;
use crate::client::{is_error, parse_token, server_error, value, Client, ClientError, Credentials};
use crate::cluster_client::ClusterClient;
use crate::tls_client::ClientTls;

/// How long a replica's reply may take beyond the read's wait before the replica is given up
/// (the reply's trip over the network, on a loaded machine).
const REPLY_GRACE: Duration = Duration::from_secs(1);
/// How long a replica whose connection failed is passed over before it is tried again, so
/// that a stopped replica does not cost every read a connection attempt.
const RETRY_DOWN: Duration = Duration::from_secs(1);

/// Numbers the clients of this process, so that they start on different replicas.
static CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// How a [`ReplicaReadClient`] waits, and logs in.
#[derive(Debug, Clone)]
pub struct ReplicaReadOptions {
    /// How long a read may wait, over all the replicas it tries, for one to reach the
    /// client's token before it goes to the primary.
    pub wait: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// What every connection (to the primary and to each replica) logs in with, if anything.
    pub credentials: Option<Credentials>,
    /// TLS for every connection, if the nodes speak it.
    pub tls: Option<ClientTls>,
}

impl Default for ReplicaReadOptions {
    /// A second of replication lag before a read goes to the primary, and `kvcli`'s
    /// connection timeout.
    fn default() -> Self {
        ReplicaReadOptions {
            wait: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            credentials: None,
            tls: None,
        }
    }
}

/// Where a client's reads were served, for a caller that wants to see the replicas work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Reads a replica answered.
    pub from_replicas: u64,
    /// Reads that went to the primary, no replica having answered in time.
    pub from_primary: u64,
}

/// Where requests that must see the newest data go.
enum Primary {
    /// One node; its connection is opened again on the next request after it fails.
    Node {
        /// Where it listens.
        addr: String,
        /// The open connection, if any.
        client: Option<Client>,
        /// How long opening the connection may take.
        connect_timeout: Duration,
        /// What the connection logs in with.
        credentials: Option<Credentials>,
        /// TLS for the connection, if any.
        tls: Option<ClientTls>,
    },
    /// A failover cluster's primary, wherever it is now.
    Cluster(ClusterClient),
}

impl Primary {
    /// Send `lines` to the primary in one round trip; their replies, in order.
    fn pipeline(&mut self, lines: &[&[u8]]) -> Result<Vec<Vec<u8>>, ClientError> {
        match self {
            Primary::Cluster(cluster) => cluster.pipeline(lines),
            Primary::Node {
                addr,
                client,
                connect_timeout,
                credentials,
                tls,
            } => {
                let connection = match client {
                    Some(connection) => connection,
                    None => client.insert(Client::connect_with(
                        addr,
                        *connect_timeout,
                        tls.as_ref(),
                        credentials.as_ref(),
                    )?),
                };
                let replies = connection.pipeline(lines);
                if replies.is_err() {
                    *client = None;
                }
                replies
            }
        }
    }

    /// Forget the connection (after `EXIT`, which closes it): the next request opens another.
    fn disconnect(&mut self) {
        match self {
            Primary::Node { client, .. } => *client = None,
            Primary::Cluster(cluster) => {
                let credentials = cluster.credentials().cloned();
                let tls = cluster.tls().cloned();
                *cluster = ClusterClient::new(cluster.members().to_vec(), cluster.timeout())
                    .with_credentials(credentials)
                    .with_tls(tls)
            }
        }
    }

    /// The primary's address, if known.
    fn addr(&self) -> Option<&str> {
        match self {
            Primary::Node { addr, .. } => Some(addr),
            Primary::Cluster(cluster) => cluster.primary(),
        }
    }
}

/// One replica the client reads from.
struct Replica {
    /// Where it listens (as the primary's `ROLE` or the caller named it).
    addr: String,
    /// The open connection, if any.
    client: Option<Client>,
    /// Passed over until then: its connection failed.
    down_until: Option<Instant>,
}

/// What one replica did with a read.
enum Attempt {
    /// It answered the read with this reply line (a value or `NOT_FOUND`), and `LASTPOS`
    /// after it with this one.
    Answered(Vec<u8>, Vec<u8>),
    /// It could not show the token's position, or refused the read, or failed.
    PassedOver,
}

/// A client that writes to the primary and reads from its replicas with read-your-writes and
/// monotonic reads (see the module's documentation).
pub struct ReplicaReadClient {
    /// Where writes, and reads no replica could answer, go.
    primary: Primary,
    /// Where reads go first.
    replicas: Vec<Replica>,
    /// The replica tried first: the last one that answered.
    preferred: usize,
    /// The newest position this client has seen.
    token: PositionToken,
    /// How reads wait.
    options: ReplicaReadOptions,
    /// Where the reads so far were served.
    stats: ReadStats,
}

impl ReplicaReadClient {
    /// A client of the primary at `primary` (`host:port`, connected now) and of `replicas`.
    pub fn connect(
        primary: &str,
        replicas: Vec<String>,
        options: ReplicaReadOptions,
    ) -> Result<ReplicaReadClient, ClientError> {
        let client = Client::connect_with(
            primary,
            options.connect_timeout,
            options.tls.as_ref(),
            options.credentials.as_ref(),
        )?;
        Ok(ReplicaReadClient::of_node(
            primary, client, replicas, options,
        ))
    }

    /// A client of the primary at `primary` and of the replicas its `ROLE` lists (the
    /// addresses it streams to, as its `--replica` flags name them).
    pub fn discover(
        primary: &str,
        options: ReplicaReadOptions,
    ) -> Result<ReplicaReadClient, ClientError> {
        let mut client = Client::connect_with(
            primary,
            options.connect_timeout,
            options.tls.as_ref(),
            options.credentials.as_ref(),
        )?;
        let role = client.request(b"ROLE")?;
        let replicas = replicas_in_role(&role)
            .map_err(|why| ClientError::Discovery(format!("{primary}: {why}")))?;
        Ok(ReplicaReadClient::of_node(
            primary, client, replicas, options,
        ))
    }

    /// A client of the primary at `primary`, already connected as `client`.
    fn of_node(
        primary: &str,
        client: Client,
        replicas: Vec<String>,
        options: ReplicaReadOptions,
    ) -> ReplicaReadClient {
        let primary = Primary::Node {
            addr: primary.to_string(),
            client: Some(client),
            connect_timeout: options.connect_timeout,
            credentials: options.credentials.clone(),
            tls: options.tls.clone(),
        };
        ReplicaReadClient::new(primary, replicas, options)
    }

    /// A client of a failover cluster whose members are `members`: writes go to its primary,
    /// found and followed as [`ClusterClient`] does, and reads to `replicas`, or when none are
    /// given to every member but the primary (a member that is behind, or in another
    /// history, is passed over as any replica is).
    pub fn cluster(
        members: Vec<String>,
        replicas: Vec<String>,
        options: ReplicaReadOptions,
    ) -> ReplicaReadClient {
        let replicas = match replicas.is_empty() {
            true => members.clone(),
            false => replicas,
        };
        let cluster = ClusterClient::new(members, options.connect_timeout)
            .with_credentials(options.credentials.clone())
            .with_tls(options.tls.clone());
        ReplicaReadClient::new(Primary::Cluster(cluster), replicas, options)
    }

    fn new(
        primary: Primary,
        replicas: Vec<String>,
        options: ReplicaReadOptions,
    ) -> ReplicaReadClient {
        let start = std::process::id() as usize + CLIENTS.fetch_add(1, Ordering::Relaxed);
        ReplicaReadClient {
            primary,
            preferred: start % replicas.len().max(1),
            replicas: replicas
                .into_iter()
                .map(|addr| Replica {
                    addr,
                    client: None,
                    down_until: None,
                })
                .collect(),
            token: PositionToken {
                epoch: 0,
                id: None,
                offset: 0,
                previous: None,
            },
            options,
            stats: ReadStats::default(),
        }
    }

    /// The replicas' addresses.
    pub fn replicas(&self) -> Vec<&str> {
        self.replicas.iter().map(|r| r.addr.as_str()).collect()
    }

    /// The newest position this client has seen: its reads show at least this much.
    pub fn token(&self) -> &PositionToken {
        &self.token
    }

    /// Where the reads so far were served.
    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// `PUT key value` on the primary.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        let reply = self.request(&[b"PUT ", key, b" ", value].concat())?;
        match reply.as_slice() {
            b"OK" => Ok(()),
            _ => Err(server_error(&reply)),
        }
    }

    /// `GET key`, from a replica that has every write and read this client has seen, or from
    /// the primary; `None` when the key does not exist.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        let reply = self.read(key)?;
        match is_error(&reply) {
            true => Err(server_error(&reply)),
            false => Ok(value(reply)),
        }
    }

    /// Run one line-protocol request and answer its reply line: `GET key` is read from a
    /// replica ([`ReplicaReadClient::get`]), anything else goes to the primary with `LASTPOS`
    /// after it; `EXIT` goes alone, and closes the connections.
    pub fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut words = line
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty());
        let (verb, key, rest) = (words.next(), words.next(), words.next());
        match (verb, key, rest) {
            (Some(verb), Some(key), None) if verb.eq_ignore_ascii_case(b"GET") => self.read(key),
            (Some(verb), None, None) if verb.eq_ignore_ascii_case(b"EXIT") => {
                let reply = self.primary.pipeline(&[line]);
                self.primary.disconnect();
                self.replicas.iter_mut().for_each(|r| r.client = None);
                reply?.pop().ok_or(ClientError::Closed)
            }
            _ => self.on_primary(line),
        }
    }

    /// Send `line` to the primary, with `LASTPOS` after it; answers its reply.
    fn on_primary(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        let replies = self.primary.pipeline(&[line, b"LASTPOS"])?;
        let [reply, token] = <[Vec<u8>; 2]>::try_from(replies).map_err(|_| ClientError::Closed)?;
        self.advance(&token);
        Ok(reply)
    }

    /// The reply to `GET key`: from the first replica that reaches the token in time, else
    /// from the primary.
    fn read(&mut self, key: &[u8]) -> Result<Vec<u8>, ClientError> {
        let deadline = Instant::now() + self.options.wait;
        let (count, preferred) = (self.replicas.len(), self.preferred);
        for index in (0..count).map(|i| (preferred + i) % count) {
            if Instant::now() >= deadline {
                break;
            }
            if self.primary.addr() == Some(self.replicas[index].addr.as_str()) {
                continue; // a cluster member that is the primary now: read there last
            }
            if let Attempt::Answered(reply, token) = self.try_replica(index, key, deadline) {
                self.advance(&token);
                self.preferred = index;
                self.stats.from_replicas += 1;
                return Ok(reply);
            }
        }
        let reply = self.on_primary(&[b"GET ", key].concat())?;
        self.stats.from_primary += 1;
        Ok(reply)
    }

    /// Read `key` on replica `index`, once it reaches the token, waiting until `deadline`.
    fn try_replica(&mut self, index: usize, key: &[u8], deadline: Instant) -> Attempt {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let line = [
            b"GET ",
            key,
            format!(" AFTER {} {}", self.token, left.as_millis().max(1)).as_bytes(),
        ]
        .concat();
        let connect_timeout = self.options.connect_timeout.min(left + REPLY_GRACE);
        let credentials = self.options.credentials.as_ref();
        let tls = self.options.tls.as_ref();
        let replica = &mut self.replicas[index];
        if replica.down_until.is_some_and(|until| now < until) {
            return Attempt::PassedOver;
        }
        let answer = (|| {
            let client = match &mut replica.client {
                Some(client) => client,
                None => replica.client.insert(Client::connect_with(
                    &replica.addr,
                    connect_timeout,
                    tls,
                    credentials,
                )?),
            };
            client.set_read_timeout(Some(left + REPLY_GRACE))?;
            client.pipeline(&[&line, b"LASTPOS"])
        })();
        match answer.map(<[Vec<u8>; 2]>::try_from) {
            Ok(Ok([reply, token])) if !is_error(&reply) => Attempt::Answered(reply, token),
            // Refused (`TIMEOUT`, `NOHISTORY`, ...): the connection is still in step.
            Ok(Ok(_)) => Attempt::PassedOver,
            Ok(Err(_)) | Err(_) => {
                replica.client = None;
                replica.down_until = Some(Instant::now() + RETRY_DOWN);
                Attempt::PassedOver
            }
        }
    }

    /// Take the token of a `LASTPOS` reply if it is newer than the one held.
    fn advance(&mut self, reply: &[u8]) {
        if let Ok(seen) = parse_token(reply) {
            if is_newer(&self.token, &seen) {
                self.token = seen;
            }
        }
    }
}

/// Whether `seen` should replace `held`. Offsets of one history are compared; offsets of two
/// histories are unrelated numbers, so a token of another history replaces the held one as
/// long as it names a position (offset above 0) and is not of an older epoch: a node's
/// replies only ever move on to a newer history (a restarted primary's, or a failover's),
/// and a node that answered a read for the held token had reached it.
fn is_newer(held: &PositionToken, seen: &PositionToken) -> bool {
    match held.id == seen.id {
        true => seen.offset > held.offset,
        false => seen.offset > 0 && seen.epoch >= held.epoch,
    }
}

/// The replicas a primary's line-protocol `ROLE` reply lists
/// (`primary offset=N replicas=HOST:PORT@OFFSET,...`), or why there are none to read from.
pub fn replicas_in_role(reply: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(reply);
    if !text.starts_with("primary ") {
        return Err(format!(
            "not a primary (ROLE: {text}); name the primary, whose replicas are read"
        ));
    }
    let list = text
        .split(' ')
        .find_map(|field| field.strip_prefix("replicas="))
        .unwrap_or_default();
    let replicas: Vec<String> = list
        .split(',')
        .filter(|entry| !entry.is_empty())
        .map(|entry| entry.rsplit_once('@').map_or(entry, |(addr, _)| addr))
        .map(str::to_string)
        .collect();
    match replicas.is_empty() {
        true => Err("the primary has no replicas to read from".into()),
        false => Ok(replicas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str) -> PositionToken {
        text.parse().unwrap()
    }

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_token_moves_forward_within_a_history_and_on_to_a_newer_one() {
        let held = token(&format!("0:{A}:10"));
        assert!(is_newer(&held, &token(&format!("0:{A}:11"))));
        assert!(!is_newer(&held, &token(&format!("0:{A}:10"))));
        assert!(!is_newer(&held, &token(&format!("0:{A}:9"))));
        // Another history: the latest one received, even at a smaller offset...
        assert!(is_newer(&held, &token(&format!("0:{B}:3"))));
        assert!(is_newer(&held, &token(&format!("2:{B}:3"))));
        // ...unless it names no position, or an older epoch's history.
        assert!(!is_newer(&held, &token("0:-:0")));
        assert!(!is_newer(
            &token(&format!("3:{A}:10")),
            &token(&format!("2:{B}:50"))
        ));
        // A client that has seen nothing takes any position.
        assert!(is_newer(&token("0:-:0"), &token(&format!("0:{A}:1"))));
        assert!(!is_newer(&token("0:-:0"), &token("0:-:0")));
    }

    #[test]
    fn role_lists_a_primarys_replicas() {
        assert_eq!(
            replicas_in_role(b"primary offset=7 replicas=127.0.0.1:7001@7,db2:7002@0"),
            Ok(vec!["127.0.0.1:7001".to_string(), "db2:7002".to_string()])
        );
        let none = replicas_in_role(b"primary offset=0 replicas=").unwrap_err();
        assert!(none.contains("no replicas"), "{none}");
        let replica = replicas_in_role(b"replica primary=?:0 link=up offset=1").unwrap_err();
        assert!(replica.contains("not a primary"), "{replica}");
    }
}
