//! `cargo xtask redis start|stop|env|status`: a throw-away `redis-server` on 127.0.0.1.
//!
//! The Redis tier's tests (`crates/cache-remote-redis`) talk to a real server. It runs as
//! `redis-server --bind 127.0.0.1 --port P --save '' --appendonly no --daemonize no` (nothing is
//! persisted) on a free port, with its working directory and log under `target/redis/`; its pid,
//! port and log are kept in `target/redis/server.json`. `start` reuses a live server described
//! there (it must answer `PING`), so several shells and `cargo xtask ci` can share one; `stop`
//! kills it by its pid.
//!
//! The tests read the variables of [`State::env_vars`]: `TIERED_CACHE_REDIS_URL` (the server)
//! and `TIERED_CACHE_REDIS_SERVER` (the `redis-server` binary, for tests that start a private
//! server to stop or pause). `cargo xtask redis env` prints them as `export` lines. If
//! `TIERED_CACHE_REDIS_URL` is already set, `cargo xtask ci` uses that server and starts none.
//! `.ci/run` installs `redis-server` (Debian's `redis-server` package) when it is missing.

use std::{
    env,
    fs::{self, File},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

/// The variable naming the server the tests use (`redis://127.0.0.1:P/`).
pub(crate) const URL_ENV: &str = "TIERED_CACHE_REDIS_URL";
/// The variable naming the `redis-server` binary, for tests that run a private server.
pub(crate) const SERVER_ENV: &str = "TIERED_CACHE_REDIS_SERVER";
/// How long `start` waits for the server to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `cargo xtask redis <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let sh = crate::shell()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["start"] => {
            let (state, child) = start_or_reuse()?;
            // The server outlives this command: `cargo xtask redis stop` stops it.
            drop(child);
            eprintln!(
                "redis-server (pid {}) at {}; `cargo xtask redis stop` stops it. \
                 For a shell: eval \"$(cargo xtask redis env)\"",
                state.pid,
                state.url()
            );
            print_exports(&state);
            Ok(())
        }
        ["stop"] => stop(&sh),
        ["env"] => match read_live_state()? {
            Some(state) => {
                print_exports(&state);
                Ok(())
            }
            None => bail!("no redis-server is running; start one with `cargo xtask redis start`"),
        },
        ["status"] => {
            match read_live_state()? {
                Some(s) => {
                    println!("running: pid {} at {}, log {}", s.pid, s.url(), s.log.display())
                }
                None => println!("not running"),
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask redis start|stop|env|status"),
    }
}

/// What `target/redis/server.json` records about a running server.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pid: u32,
    port: u16,
    binary: PathBuf,
    log: PathBuf,
}

impl State {
    fn to_json(&self) -> Value {
        json!({ "pid": self.pid, "port": self.port, "binary": self.binary, "log": self.log })
    }

    fn from_json(v: &Value) -> Option<State> {
        Some(State {
            pid: u32::try_from(v.get("pid")?.as_u64()?).ok()?,
            port: u16::try_from(v.get("port")?.as_u64()?).ok()?,
            binary: v.get("binary")?.as_str()?.into(),
            log: v.get("log")?.as_str()?.into(),
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The environment the tests read to reach this server.
    pub(crate) fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![(URL_ENV, self.url()), (SERVER_ENV, self.binary.display().to_string())]
    }
}

/// The Redis server used by one `cargo xtask ci` run; stops it on drop if this run started it.
#[derive(Debug)]
pub(crate) struct TestRedis {
    env: Vec<(&'static str, String)>,
    owned: Option<(State, Child)>,
}

impl TestRedis {
    /// Uses the server named by `TIERED_CACHE_REDIS_URL` if it is set; otherwise reuses the
    /// running local server or starts one.
    pub(crate) fn for_tests() -> Result<TestRedis> {
        if let Ok(url) = env::var(URL_ENV) {
            eprintln!("using the Redis server at {url} ({URL_ENV} is set)");
            return Ok(TestRedis { env: Vec::new(), owned: None });
        }
        let (state, child) = start_or_reuse()?;
        Ok(TestRedis { env: state.env_vars(), owned: child.map(|c| (state, c)) })
    }

    /// The variables to set for the test processes (empty for an external server).
    pub(crate) fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Some((state, mut child)) = self.owned.take() {
            eprintln!("stopping the redis-server (pid {}) started for this run", state.pid);
            let result = crate::shell().and_then(|sh| {
                let _lock = lock()?;
                kill(&sh, state.pid, Some(&mut child));
                remove_state()
            });
            if let Err(e) = result {
                eprintln!("warning: could not clean up the redis-server: {e:#}");
            }
        }
    }
}

fn redis_dir() -> PathBuf {
    crate::target_dir().join("redis")
}

fn state_path() -> PathBuf {
    redis_dir().join("server.json")
}

/// Serializes `start`/`stop` across processes.
fn lock() -> Result<File> {
    crate::state_file::lock(&redis_dir())
}

fn read_state() -> Result<Option<State>> {
    crate::state_file::read(&state_path(), State::from_json)
}

fn remove_state() -> Result<()> {
    match fs::remove_file(state_path()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", state_path().display()))
        }
        _ => Ok(()),
    }
}

/// The recorded server, if its process is alive and it answers `PING`.
fn read_live_state() -> Result<Option<State>> {
    Ok(read_state()?.filter(|s| is_redis_running(s.pid) && pings(s.addr())))
}

/// Starts a server, or reuses the live one recorded in the state file. Returns the process
/// handle only when this call started the server.
fn start_or_reuse() -> Result<(State, Option<Child>)> {
    let _lock = lock()?;
    if let Some(state) = read_state()? {
        if is_redis_running(state.pid) && pings(state.addr()) {
            eprintln!("reusing the running redis-server (pid {}) at {}", state.pid, state.url());
            return Ok((state, None));
        }
        eprintln!("the redis-server recorded in {} is gone", state_path().display());
        remove_state()?;
    }
    let binary = find_redis_server().context(
        "`redis-server` is not on PATH: install it (Debian: apt-get install -y redis-server), \
         or set TIERED_CACHE_REDIS_URL to a server of your own",
    )?;
    // A free port: bind port 0, note it, release it for the server.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = redis_dir();
    let log = dir.join(format!("redis-{port}.log"));
    let mut command = Command::new(&binary);
    command
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    eprintln!("starting {command:?}");
    let mut child = command.spawn().with_context(|| format!("running {}", binary.display()))?;
    let state = State { pid: child.id(), port, binary, log };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = fs::read_to_string(&state.log).unwrap_or_default();
            bail!("redis-server exited during start-up ({status}):\n{tail}");
        }
        if pings(state.addr()) {
            break;
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("redis-server did not answer PING on port {port} within {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let text = serde_json::to_string_pretty(&state.to_json())?;
    fs::write(state_path(), text + "\n")
        .with_context(|| format!("writing {}", state_path().display()))?;
    eprintln!("redis-server (pid {}) answers on {}", state.pid, state.url());
    Ok((state, Some(child)))
}

fn stop(sh: &Shell) -> Result<()> {
    let _lock = lock()?;
    let Some(state) = read_state()? else {
        eprintln!("no redis-server is recorded in {}", state_path().display());
        return Ok(());
    };
    if is_redis_running(state.pid) {
        kill(sh, state.pid, None);
        eprintln!("stopped the redis-server (pid {})", state.pid);
    } else {
        eprintln!("the redis-server (pid {}) had already exited", state.pid);
    }
    remove_state()
}

/// Sends SIGKILL (nothing is persisted, so nothing is lost) and waits for the process to go.
fn kill(sh: &Shell, pid: u32, child: Option<&mut Child>) {
    let pid_arg = pid.to_string();
    if let Err(e) = cmd!(sh, "kill -9 {pid_arg}").quiet().ignore_stderr().ignore_status().run() {
        eprintln!("warning: kill -9 {pid}: {e}");
    }
    match child {
        Some(child) => {
            let _ = child.wait();
        }
        None => {
            let start = Instant::now();
            while is_redis_running(pid) && start.elapsed() < Duration::from_secs(10) {
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// `TIERED_CACHE_REDIS_SERVER` if set, else `redis-server` on `PATH`.
pub(crate) fn find_redis_server() -> Option<PathBuf> {
    if let Some(path) = env::var_os(SERVER_ENV) {
        return Some(PathBuf::from(path));
    }
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join("redis-server")).find(|p| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether `pid` is a live (not zombie) `redis-server` process.
fn is_redis_running(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next();
    comm.starts_with("redis-server") && !matches!(state, Some('Z' | 'X' | 'x'))
}

/// Whether a Redis server at `addr` answers an inline `PING` with `+PONG`.
fn pings(addr: SocketAddr) -> bool {
    let timeout = Duration::from_secs(1);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else { return false };
    if stream.set_read_timeout(Some(timeout)).is_err() || stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    let mut len = 0;
    while len < buf.len() {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    &buf[..len] == b"+PONG\r\n"
}

fn print_exports(state: &State) {
    for (name, value) in state.env_vars() {
        println!("export {name}='{value}'");
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpListener,
        path::PathBuf,
        thread,
    };

    use super::{State, URL_ENV, is_redis_running, pings};

    #[test]
    fn state_file_round_trips() {
        let state = State {
            pid: 7,
            port: 40001,
            binary: PathBuf::from("/usr/bin/redis-server"),
            log: PathBuf::from("target/redis/redis-40001.log"),
        };
        let back = State::from_json(&state.to_json()).expect("all fields present");
        assert_eq!(format!("{back:?}"), format!("{state:?}"));
        assert_eq!(state.env_vars()[0], (URL_ENV, "redis://127.0.0.1:40001/".to_owned()));
    }

    #[test]
    fn ping_probe_wants_pong() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let answer = thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            let mut buf = [0u8; 16];
            let _ = conn.read(&mut buf);
            conn.write_all(b"+PONG\r\n").unwrap();
        });
        assert!(pings(addr));
        answer.join().unwrap();

        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let closer = thread::spawn(move || drop(silent.accept().unwrap()));
        assert!(!pings(silent_addr));
        closer.join().unwrap();

        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(!pings(closed));
    }

    #[test]
    fn only_live_redis_processes_count() {
        assert!(!is_redis_running(std::process::id()));
        assert!(!is_redis_running(0));
    }
}
