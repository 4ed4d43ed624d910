//! `kvcli`: talk to a kvstore node.
//!
//! - `kvcli GET name` runs one command and prints the reply.
//! - With commands piped on stdin, runs each and prints each reply.
//! - Otherwise opens an interactive prompt with line editing and history.
//! - `--read-from-replicas` reads `GET`s from the primary's replicas, still showing every
//!   write made before (position tokens), and sends everything else to the primary.
//!
//! Exit status: 0 when every reply was a success, 1 when a reply was an `ERROR`, 2 when the
//! node could not be reached or the connection failed.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use kvstore::client::{is_error, Client, ClientError, Credentials, PASSWORD_ENV, USER_ENV};
use kvstore::cluster_client::ClusterClient;
use kvstore::replica_reads::{ReplicaReadClient, ReplicaReadOptions};
use kvstore::tls_client::{ClientTls, TlsArgs};
use rustyline::error::ReadlineError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for kvstore nodes.
#[derive(Debug, Parser)]
#[command(name = "kvcli", version)]
struct Args {
    /// Host of the node.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the node (a primary listens on 12345, a replica on 12346).
    #[arg(long, short, default_value_t = 12345)]
    port: u16,
    /// The members of a failover cluster (`HOST:PORT,HOST:PORT,...`): kvcli finds the primary
    /// itself and follows it when a new one is elected (instead of --host and --port).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',', conflicts_with_all = ["host", "port"])]
    cluster: Vec<String>,
    /// Read GETs from the primary's replicas (the ones ROLE on the primary lists, or
    /// --replicas), and send every other command to the primary named by --host/--port or
    /// found with --cluster. Reads still show every write made before them and never go back
    /// in time: kvcli keeps the position token of what it has seen (LASTPOS) and reads with
    /// GET key AFTER token; a replica that is behind past --replica-wait-ms, or down, is passed
    /// over for another replica, then the primary. Commands run one at a time.
    #[arg(long)]
    read_from_replicas: bool,
    /// The replicas to read from with --read-from-replicas, instead of those the primary lists
    /// (with --cluster: instead of every member but the primary).
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        requires = "read_from_replicas"
    )]
    replicas: Vec<String>,
    /// How long a read may wait for replicas to catch up with what kvcli has seen before it
    /// goes to the primary (--read-from-replicas).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1000,
        requires = "read_from_replicas"
    )]
    replica_wait_ms: u64,
    /// The user to log in as, on a node that asks for a login (with --pass); without it,
    /// `default`.
    #[arg(long, value_name = "NAME", env = USER_ENV, requires = "pass")]
    user: Option<String>,
    /// The password to log in with (`AUTH`), on a node started with --requirepass or
    /// --users-file. A flag shows in `ps`: prefer the KVSTORE_PASSWORD environment variable.
    #[arg(long, short = 'a', value_name = "PASSWORD", env = PASSWORD_ENV, hide_env_values = true)]
    pass: Option<String>,
    #[command(flatten)]
    tls: TlsArgs,
    /// A command to run, such as `GET name` or `PUT name John Smith`. Without one, commands
    /// are read from stdin: interactively with a prompt when it is a terminal.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

impl Args {
    /// What to log in with, if anything.
    fn credentials(&self) -> Option<Credentials> {
        let password = self.pass.clone()?;
        Some(Credentials::new(self.user.clone(), password))
    }
}

/// How a run ended, which decides the exit status.
#[derive(Debug, Default)]
struct Outcome {
    saw_error: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = check_command(&args.command) {
        eprintln!("kvcli: {error}");
        return ExitCode::from(2);
    }
    let tls = match args.tls.for_program("kvcli") {
        Ok(tls) => tls,
        Err(code) => return code,
    };
    let addr = format!("{}:{}", args.host, args.port);
    let result = if args.read_from_replicas {
        replica_reads(&args, &addr, tls)
    } else if args.cluster.is_empty() {
        single(&args, &addr, tls.as_ref())
    } else {
        let mut client = ClusterClient::new(args.cluster.clone(), CONNECT_TIMEOUT)
            .with_credentials(args.credentials())
            .with_tls(tls);
        one_at_a_time(&args, &mut client, "cluster")
    };
    match result {
        Ok(Outcome { saw_error: false }) => ExitCode::SUCCESS,
        Ok(Outcome { saw_error: true }) => ExitCode::from(1),
        Err(error) => {
            eprintln!("kvcli: {error}");
            ExitCode::from(2)
        }
    }
}

/// What kvcli sends its requests through, one at a time: one node, the failover cluster's
/// primary wherever it is (a request refused by a deposed primary is sent again), or the
/// primary and its replicas (`--read-from-replicas`).
trait Requests {
    /// Send one request line and answer its reply line.
    fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError>;
}

impl Requests for Client {
    fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        Client::request(self, line)
    }
}

impl Requests for ClusterClient {
    fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        ClusterClient::request(self, line)
    }
}

impl Requests for ReplicaReadClient {
    fn request(&mut self, line: &[u8]) -> Result<Vec<u8>, ClientError> {
        ReplicaReadClient::request(self, line)
    }
}

/// Run the command, or the commands of stdin, one at a time through `client`; `name` is what
/// the interactive prompt shows.
fn one_at_a_time(
    args: &Args,
    client: &mut impl Requests,
    name: &str,
) -> Result<Outcome, ClientError> {
    if !args.command.is_empty() {
        return one_command(client, &args.command.join(" "));
    }
    if io::stdin().is_terminal() {
        return interactive(client, name);
    }
    let mut outcome = Outcome::default();
    for line in io::stdin().lock().split(b'\n') {
        let line = line?;
        if is_blank(&line) {
            continue;
        }
        let reply = client.request(&line)?;
        print_reply(&reply)?;
        outcome.saw_error |= is_error(&reply);
        if is_exit(&line) {
            break;
        }
    }
    Ok(outcome)
}

/// Write to the primary and read from its replicas, with position tokens.
fn replica_reads(args: &Args, addr: &str, tls: Option<ClientTls>) -> Result<Outcome, ClientError> {
    let options = ReplicaReadOptions {
        wait: Duration::from_millis(args.replica_wait_ms),
        connect_timeout: CONNECT_TIMEOUT,
        credentials: args.credentials(),
        tls,
    };
    let replicas = args.replicas.clone();
    let (mut client, name) = if !args.cluster.is_empty() {
        let client = ReplicaReadClient::cluster(args.cluster.clone(), replicas, options);
        (client, "cluster+replicas".to_string())
    } else if replicas.is_empty() {
        (
            ReplicaReadClient::discover(addr, options)?,
            format!("{addr}+replicas"),
        )
    } else {
        let client = ReplicaReadClient::connect(addr, replicas, options)?;
        (client, format!("{addr}+replicas"))
    };
    one_at_a_time(args, &mut client, &name)
}

/// Talk to one node; a script is pipelined.
fn single(args: &Args, addr: &str, tls: Option<&ClientTls>) -> Result<Outcome, ClientError> {
    let credentials = args.credentials();
    let mut client = Client::connect_with(addr, CONNECT_TIMEOUT, tls, credentials.as_ref())?;
    match args.command.is_empty() && !io::stdin().is_terminal() {
        true => piped(client),
        false => one_at_a_time(args, &mut client, addr),
    }
}

/// Whether a one-shot command can be sent as one request line meaning what its arguments say:
/// the options come first (an unknown `--option` is not a command), and no argument but
/// `PUT`'s value may hold a blank (the line protocol splits words at blanks) or be empty, and
/// none a newline.
fn check_command(words: &[String]) -> Result<(), String> {
    let Some(verb) = words.first() else {
        return Ok(());
    };
    if verb.starts_with('-') {
        return Err(format!(
            "unknown option '{verb}' (options come before the command; see kvcli --help)"
        ));
    }
    // PUT's value is the rest of the line: it may hold blanks.
    let words = match verb.eq_ignore_ascii_case("PUT") {
        true => &words[..words.len().min(2)],
        false => words,
    };
    for word in words {
        if word.contains(['\n', '\r']) {
            return Err(format!(
                "the argument {word:?} holds a newline, which a request line cannot carry"
            ));
        }
        if word.is_empty() || word.contains([' ', '\t']) {
            return Err(format!(
                "the argument {word:?} is empty or holds a blank, which the line protocol cannot \
                 carry in a key or a command word (only PUT's value may hold blanks); use \
                 redis-cli for such keys"
            ));
        }
    }
    Ok(())
}

fn print_reply(reply: &[u8]) -> Result<(), ClientError> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(reply)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// Whether the server ignores this line (it only holds spaces, tabs or a `\r`).
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// Whether the line is an `AUTH`, which holds a password.
fn is_auth(line: &[u8]) -> bool {
    let line = line.trim_ascii_start();
    line.get(..5).is_some_and(|verb| {
        verb.eq_ignore_ascii_case(b"AUTH ") || verb.eq_ignore_ascii_case(b"AUTH\t")
    })
}

fn is_exit(line: &[u8]) -> bool {
    line.trim_ascii().eq_ignore_ascii_case(b"EXIT")
}

fn one_command(client: &mut impl Requests, line: &str) -> Result<Outcome, ClientError> {
    if is_blank(line.as_bytes()) {
        return Ok(Outcome::default());
    }
    let reply = client.request(line.as_bytes())?;
    print_reply(&reply)?;
    Ok(Outcome {
        saw_error: is_error(&reply),
    })
}

/// Run every line of stdin, pipelining them: this thread sends requests while another reads
/// and prints the replies, so a large script runs at the node's speed and neither side can
/// wait on the other with full buffers.
fn piped(client: Client) -> Result<Outcome, ClientError> {
    let (mut writer, mut reader) = client.into_split();
    // One token per request sent: the reader reads exactly as many replies as were sent.
    let (sent, expected) = mpsc::channel::<()>();
    let printer = thread::spawn(move || -> Result<bool, ClientError> {
        let mut saw_error = false;
        for () in expected {
            let reply = reader.read_reply()?;
            print_reply(&reply)?;
            saw_error |= is_error(&reply);
        }
        Ok(saw_error)
    });
    let sending = (|| -> Result<(), ClientError> {
        for line in io::stdin().lock().split(b'\n') {
            let line = line?;
            if is_blank(&line) {
                continue;
            }
            writer.send(&line)?;
            // Flush per line: stdin may pause (a script that waits), and its replies must not.
            writer.flush()?;
            if sent.send(()).is_err() {
                break; // the reader stopped: its error is reported below
            }
            if is_exit(&line) {
                break;
            }
        }
        Ok(())
    })();
    drop(sent);
    let saw_error = printer
        .join()
        .map_err(|_| ClientError::Io(io::Error::other("reply reader panicked")))??;
    sending?;
    Ok(Outcome { saw_error })
}

const HELP: &str = "\
Commands:
  PUT <key> <value>   store a value (the rest of the line, spaces included)
  GET <key>           print the value, or NOT_FOUND
  DEL <key>           remove a key: OK, or NOT_FOUND
  PING                PONG if the node is alive
  INFO                role, replication and counters as field=value pairs
  DIGEST              a hash of all the data and the offset it reflects
  WAIT <n> <ms>       wait until n replicas have this connection's writes
  ROLE                primary (with its replicas) or replica (with its primary)
  LASTPOS             the position token of what this connection has seen
  WAITPOS <token> <ms>
                      wait until this node has reached the token's position
  GET <key> AFTER <token> <ms>
                      GET once this node has reached the token's position
  AUTH [<user>] <pw>  log in (kvcli --user/--pass or KVSTORE_PASSWORD does it first)
  ACL WHOAMI          the user this connection is logged in as
  EXIT                close the connection and quit (so does Ctrl-D)
  HELP                this text";

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kvcli_history"))
}

fn interactive(client: &mut impl Requests, addr: &str) -> Result<Outcome, ClientError> {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(error) => return Err(ClientError::Io(io::Error::other(error))),
    };
    let history = history_file();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    let prompt = format!("{addr}> ");
    let result = loop {
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break Ok(Outcome::default()),
            Err(error) => break Err(ClientError::Io(io::Error::other(error))),
        };
        if is_blank(line.as_bytes()) {
            continue;
        }
        // A password typed at the prompt must not end up in the history file.
        if !is_auth(line.as_bytes()) {
            let _ = editor.add_history_entry(line.as_str());
        }
        if line.trim().eq_ignore_ascii_case("HELP") {
            println!("{HELP}");
            continue;
        }
        match client.request(line.as_bytes()) {
            Ok(reply) => print_reply(&reply)?,
            Err(error) => break Err(error),
        }
        if is_exit(line.as_bytes()) {
            break Ok(Outcome::default());
        }
    };
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    result
}
