//! The topology under test: a primary and its replicas, each a real process with its own data
//! directory, with a proxy of ours in front of every node (the clients' way in) and on every
//! replication link, so that any link can be cut, both ways or one way, without root.
//!
//! Our nodes and Redis set up replication in opposite directions: a kvnode primary connects to
//! its replicas (`--replica`), a Redis replica connects to its primary (`--replicaof`). A link
//! proxy sits on that connection either way; `Link` remembers which end connects, so that "the
//! primary's stream is cut" means the same thing for both.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use kvstore::chaos::proxy::{Mode, Proxy};

use crate::connection::{Connection, Protocol};
use crate::node::{Node, Program, Spec, CONTROL_OFFSET};
use kvstore::chaos::history::{Call, Outcome};

/// The replication secret of the kvnode cluster (the run is on loopback only).
pub const SECRET: &str = "kvchaos-cluster-secret";

/// A replication link, through its proxy.
pub struct Link {
    /// The proxy on the link.
    pub proxy: Proxy,
    /// The replica at its far end (an index into `Cluster::nodes`).
    pub replica: usize,
    /// Whether the primary opens the connection (kvnode) rather than the replica (Redis).
    primary_connects: bool,
}

impl Link {
    /// The proxy mode that holds what flows from the primary to the replica (or, with
    /// `to_replica` false, what flows back: acknowledgements, a Redis replica's requests).
    pub fn one_way(&self, to_replica: bool) -> Mode {
        if to_replica == self.primary_connects {
            Mode::BlackholeRequests
        } else {
            Mode::BlackholeAnswers
        }
    }
}

/// The running topology; every process is killed when it is dropped.
pub struct Cluster {
    /// The nodes: the primary first, then the replicas.
    pub nodes: Vec<Node>,
    /// The proxy in front of each node, in the same order: clients connect here.
    pub fronts: Vec<Proxy>,
    /// One link per replica.
    pub links: Vec<Link>,
    /// In a failover cluster: the proxy in front of each member's control plane (the
    /// advertised port + 10000), in the same order; empty otherwise.
    pub controls: Vec<Proxy>,
    /// In a failover cluster: the address each member's connections to the others come
    /// from, in the same order; empty otherwise.
    pub sources: Vec<IpAddr>,
}

/// The address `offset` ports above `addr`.
pub fn above(addr: SocketAddr, offset: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port().saturating_add(offset))
}

impl Cluster {
    /// Start a primary and `replicas` replicas of `program`, data and logs under `out`.
    pub fn start(
        program: &Program,
        fsync: &str,
        replicas: usize,
        out: &Path,
    ) -> Result<Cluster, String> {
        let spec = |name: String, replica: bool, links: Vec<SocketAddr>| Spec {
            data_dir: out.join(&name).join("data"),
            name,
            program: program.clone(),
            fsync: fsync.to_string(),
            links,
            replica,
            secret: SECRET.to_string(),
            member: None,
        };
        let proxy = |target: SocketAddr| {
            Proxy::start(target).map_err(|e| format!("cannot start a proxy: {e}"))
        };
        let replica_name = |i: usize| format!("replica{i}");
        let mut nodes = Vec::new();
        let mut links = Vec::new();
        match program {
            Program::Kvnode(_) => {
                // Replicas listen first; the primary streams to each through its link proxy.
                for i in 1..=replicas {
                    nodes.push(Node::start(spec(replica_name(i), true, Vec::new()), out)?);
                }
                for (i, replica) in nodes.iter().enumerate() {
                    links.push(Link {
                        proxy: proxy(replica.addr)?,
                        replica: i + 1,
                        primary_connects: true,
                    });
                }
                let targets = links.iter().map(|link| link.proxy.addr).collect();
                nodes.insert(0, Node::start(spec("primary".into(), false, targets), out)?);
            }
            Program::Redis(_) => {
                // The primary first; each replica follows it through its link proxy.
                nodes.push(Node::start(spec("primary".into(), false, Vec::new()), out)?);
                for i in 1..=replicas {
                    let link = proxy(nodes[0].addr)?;
                    let target = vec![link.addr];
                    links.push(Link {
                        proxy: link,
                        replica: i,
                        primary_connects: false,
                    });
                    nodes.push(Node::start(spec(replica_name(i), true, target), out)?);
                }
            }
        }
        let fronts = nodes
            .iter()
            .map(|node| proxy(node.addr))
            .collect::<Result<_, _>>()?;
        Ok(Cluster {
            nodes,
            fronts,
            links,
            controls: Vec::new(),
            sources: Vec::new(),
        })
    }

    /// Whether this is a failover cluster, whose primary moves.
    pub fn failover(&self) -> bool {
        !self.controls.is_empty()
    }

    /// The node that is the primary now: the first without failover; in a failover cluster
    /// the one member that says so (`ROLE`, asked directly), if exactly one does.
    pub fn primary_now(&self) -> Option<usize> {
        if !self.failover() {
            return Some(0);
        }
        let primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].pid().is_some())
            .filter(|&i| {
                Connection::open(self.nodes[i].addr, Protocol::Line)
                    .and_then(|mut c| c.request("ROLE"))
                    .is_some_and(|role| role.starts_with("primary"))
            })
            .collect();
        match primaries[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    /// The primary, once there is one, within `wait`.
    pub fn wait_primary(&self, wait: Duration) -> Option<usize> {
        let start = Instant::now();
        loop {
            match self.primary_now() {
                Some(primary) => return Some(primary),
                None if start.elapsed() > wait => return None,
                // Poll interval of the deadline-bounded wait for an election.
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Cut member `i` of a failover cluster off from the other members, both ways (what they
    /// send it, and what it sends them: Raft RPCs and the replication stream), while the
    /// clients still reach every member.
    pub fn cut_off(&self, i: usize, mode: Mode) {
        for j in (0..self.nodes.len()).filter(|&j| j != i) {
            for (to, from) in [(i, j), (j, i)] {
                self.fronts[to].block(self.sources[from], mode);
                self.controls[to].block(self.sources[from], mode);
            }
        }
    }

    /// The name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].spec.name
    }

    /// Where clients reach node `i` (through its proxy).
    pub fn client_addr(&self, i: usize) -> SocketAddr {
        self.fronts[i].addr
    }

    /// Cut node `i` off from everyone: its clients and its replication links.
    pub fn isolate(&self, i: usize, mode: Mode) {
        self.fronts[i].set(mode);
        for link in &self.links {
            if i == 0 || link.replica == i {
                link.proxy.set(mode);
            }
        }
    }

    /// Every proxy back to forwarding, every member reconnected.
    pub fn forward_all(&self) {
        for proxy in self
            .fronts
            .iter()
            .chain(&self.controls)
            .chain(self.links.iter().map(|l| &l.proxy))
        {
            proxy.unblock_all();
            proxy.set(Mode::Forward);
        }
    }

    /// Start node `i` again (on a fresh port) and point the proxies in front of it there.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].spawn()?;
        let addr = self.nodes[i].addr;
        self.fronts[i].retarget(addr);
        if let Some(control) = self.controls.get(i) {
            control.retarget(above(addr, CONTROL_OFFSET));
        }
        for link in &self.links {
            // A link proxy leads to the end that is connected to: the replica for kvnode, the
            // primary for Redis.
            let leads_to = if link.primary_connects {
                link.replica
            } else {
                0
            };
            if leads_to == i {
                link.proxy.retarget(addr);
            }
        }
        Ok(())
    }

    /// Every link and every node back to normal: proxies forward, paused processes continue,
    /// file size limits are lifted, and a node that is not running is started. Answers the
    /// nodes that had exited by themselves (crashes the run did not cause).
    pub fn heal(&mut self) -> Result<Vec<String>, String> {
        self.forward_all();
        let crashed = self.restart_crashed()?;
        for node in &mut self.nodes {
            node.signal("CONT")?;
            node.limit_file_size(None)?;
        }
        Ok(crashed)
    }

    /// Nodes that exited by themselves since the last look, with how; each is started again.
    pub fn restart_crashed(&mut self) -> Result<Vec<String>, String> {
        let mut crashed = Vec::new();
        for i in 0..self.nodes.len() {
            if let Some(status) = self.nodes[i].exited()? {
                crashed.push(format!("{} exited by itself ({status})", self.name(i)));
                self.restart(i)?;
            }
        }
        Ok(crashed)
    }

    /// Whether every replica shows the primary's value for every key, asked directly (not
    /// through the proxies); what differs, if not. In a failover cluster, the primary is the
    /// member that says it is one. Only answered reads count: two errors or
    /// two timeouts are not agreement.
    pub fn compare(&self, keys: &[String], protocol: Protocol) -> Result<(), String> {
        let values = |i: usize| -> Result<Vec<Option<String>>, String> {
            let mut connection = Connection::open(self.nodes[i].addr, protocol)
                .ok_or_else(|| format!("{} does not answer", self.name(i)))?;
            keys.iter()
                .map(|key| match connection.call(key, &Call::Get) {
                    Outcome::Read(value) => Ok(value),
                    other => Err(format!(
                        "{} answered GET {key} with {other:?}",
                        self.name(i)
                    )),
                })
                .collect()
        };
        let primary = self.primary_now().ok_or("no primary")?;
        let values_of_primary = values(primary)?;
        for i in (0..self.nodes.len()).filter(|&i| i != primary) {
            let replica = values(i)?;
            if let Some(((key, p), r)) = keys
                .iter()
                .zip(&values_of_primary)
                .zip(&replica)
                .find(|((_, p), r)| p != r)
            {
                return Err(format!("{key}: primary {p:?}, {} {r:?}", self.name(i)));
            }
        }
        Ok(())
    }

    /// Stop every node gracefully; what went wrong, if anything did.
    pub fn stop(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .rev()
            .filter_map(|node| node.stop().err())
            .collect()
    }
}
