//! `WATCH` over the wire: optimistic check-and-set as Redis clients use it.

mod common;

use common::NodeProcess;

#[test]
fn redis_py_check_and_set_loses_no_increment_under_contention() {
    let node = NodeProcess::start(&[]);
    // Eight threads each add 1 to a counter 50 times by WATCH, GET, MULTI, SET, EXEC, retrying
    // when EXEC answers nil: with a working WATCH no increment is lost. A second key is
    // changed by a plain writer meanwhile, which must not abort anything watching only the
    // counter.
    let script = format!(
        r#"
import signal, threading, redis
signal.alarm(120)  # a livelock fails the test instead of hanging it
port = {port}
r = redis.Redis(port=port)
r.set("counter", 0)
aborted = [0]

def add_one(pipe):
    value = int(pipe.get("counter"))
    pipe.multi()
    pipe.set("counter", value + 1)

def worker():
    c = redis.Redis(port=port)
    for _ in range(50):
        while True:
            with c.pipeline() as pipe:
                try:
                    pipe.watch("counter")
                    add_one(pipe)
                    pipe.execute()
                    break
                except redis.WatchError:
                    aborted[0] += 1

def noise():
    c = redis.Redis(port=port)
    for i in range(500):
        c.set("unrelated", i)

threads = [threading.Thread(target=worker) for _ in range(8)] + [threading.Thread(target=noise)]
for t in threads: t.start()
for t in threads: t.join()
assert int(r.get("counter")) == 400, r.get("counter")

# The same through redis-py's helper, and an abort seen directly.
def incr_counter(pipe):
    pipe.multi()
    pipe.incr("counter")
assert r.transaction(incr_counter, "counter") == [401]
p = r.pipeline()
p.watch("counter")
r.set("counter", 0)
p.multi()
p.incr("counter")
try:
    p.execute()
    raise SystemExit("EXEC ran although a watched key changed")
except redis.WatchError:
    pass
print("ok", aborted[0])
"#,
        port = node.addr.port()
    );
    let stdout = common::redis_py(&script);
    assert!(stdout.starts_with("ok "), "{stdout}");
}

#[test]
fn exec_answers_a_null_array_when_a_watched_key_changed() {
    let node = NodeProcess::start(&[]);
    let url = format!("redis://{}/", node.addr);
    let client = redis::Client::open(url).unwrap();
    let mut watcher = client.get_connection().unwrap();
    let mut other = client.get_connection().unwrap();
    let ask = |con: &mut redis::Connection, args: &[&str]| {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query::<redis::Value>(con)
    };
    let ok = |reply: redis::RedisResult<redis::Value>| {
        assert_eq!(reply.unwrap(), redis::Value::Okay);
    };
    ok(ask(&mut watcher, &["WATCH", "k"]));
    ok(ask(&mut watcher, &["MULTI"]));
    ask(&mut watcher, &["SET", "k", "mine"]).unwrap();
    let refused = ask(&mut watcher, &["WATCH", "j"]).unwrap_err();
    assert!(refused
        .to_string()
        .contains("WATCH inside MULTI is not allowed"));
    ok(ask(&mut other, &["SET", "k", "theirs"]));
    let aborted = ask(&mut watcher, &["EXEC"]).unwrap_err();
    assert_eq!(
        aborted.kind(),
        redis::ErrorKind::ExecAbortError,
        "{aborted}"
    );
    // Aborted by the queued error; now the watch itself aborts.
    ok(ask(&mut watcher, &["WATCH", "k"]));
    ok(ask(&mut other, &["SET", "k", "theirs again"]));
    ok(ask(&mut watcher, &["MULTI"]));
    ask(&mut watcher, &["SET", "k", "mine"]).unwrap();
    assert_eq!(ask(&mut watcher, &["EXEC"]).unwrap(), redis::Value::Nil);
    let value = ask(&mut watcher, &["GET", "k"]).unwrap();
    assert_eq!(value, redis::Value::BulkString(b"theirs again".to_vec()));
    // UNWATCH, then nothing aborts.
    ok(ask(&mut watcher, &["WATCH", "k"]));
    ok(ask(&mut watcher, &["UNWATCH"]));
    ok(ask(&mut other, &["SET", "k", "x"]));
    ok(ask(&mut watcher, &["MULTI"]));
    ask(&mut watcher, &["GET", "k"]).unwrap();
    let ran = ask(&mut watcher, &["EXEC"]).unwrap();
    assert_eq!(
        ran,
        redis::Value::Array(vec![redis::Value::BulkString(b"x".to_vec())])
    );
}
