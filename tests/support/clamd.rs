//! A real clamd (Debian's clamav-daemon) on a free loopback port, with the
//! project's test signature database in `tests/signatures/` (plus the system
//! database when one is installed).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// clamd's StreamMaxLength in the test config: small, so the size-limit
/// path is tested without huge files.
pub const STREAM_MAX_BYTES: u64 = 8 * 1024 * 1024;

pub struct ClamdServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    db: PathBuf,
    child: Mutex<Child>,
}

impl ClamdServer {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn database_dir(&self) -> PathBuf {
        self.db.clone()
    }

    /// clamd's process id (benchmarks read its CPU time from /proc).
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }
}

impl Drop for ClamdServer {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The clamd shared by every test in this binary, started on first use.
pub fn shared() -> &'static ClamdServer {
    static SERVER: OnceLock<ClamdServer> = OnceLock::new();
    SERVER.get_or_init(|| start().expect("starting clamd"))
}

fn clamd_binary() -> PathBuf {
    for candidate in ["/usr/sbin/clamd", "/usr/bin/clamd"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("clamd is not installed: apt-get install clamav-daemon (scripts/test does this)");
}

/// Starts clamd with the test StreamMaxLength and waits until it answers PING.
pub fn start() -> std::io::Result<ClamdServer> {
    start_with_stream_max(STREAM_MAX_BYTES)
}

/// Starts clamd accepting streams up to `stream_max` bytes.
pub fn start_with_stream_max(stream_max: u64) -> std::io::Result<ClamdServer> {
    start_on(crate::free_port(), stream_max)
}

/// Starts clamd on `port` (e.g. to bring back one that was down).
pub fn start_on(port: u16, stream_max: u64) -> std::io::Result<ClamdServer> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("db");
    copy_test_signatures(&db)?;
    start_in(dir, &db, port, stream_max)
}

/// Fills `db` (created if missing) with the project's test signatures,
/// plus the system database when one is installed.
pub fn copy_test_signatures(db: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(db)?;
    let signatures = crate::workspace().join("tests/signatures");
    for entry in std::fs::read_dir(&signatures)? {
        let entry = entry?;
        std::fs::copy(entry.path(), db.join(entry.file_name()))?;
    }
    // Use the system database too when present (not on a fresh machine:
    // freshclam needs the internet).
    if let Ok(entries) = std::fs::read_dir("/var/lib/clamav") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if [".cvd", ".cld", ".cud"].iter().any(|ext| name.ends_with(ext)) {
                std::fs::copy(entry.path(), db.join(&*name))?;
            }
        }
    }
    Ok(())
}

/// Starts clamd on `port` with the database directory `db`, as a test
/// filled it (the way a sidecar shares the agent's signatures volume).
pub fn start_with_database(db: &Path, port: u16, stream_max: u64) -> std::io::Result<ClamdServer> {
    start_in(tempfile::tempdir()?, db, port, stream_max)
}

fn start_in(dir: tempfile::TempDir, db: &Path, port: u16, stream_max: u64) -> std::io::Result<ClamdServer> {
    let conf = dir.path().join("clamd.conf");
    let mut text = format!(
        "DatabaseDirectory {db}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nForeground yes\nLogFile {log}\n\
         StreamMaxLength {max}\nMaxFileSize {max}\nMaxScanSize {max}\nAlertExceedsMax yes\nAlertEncrypted yes\n\
         DisableCache yes\n",
        db = db.display(),
        log = dir.path().join("clamd.log").display(),
        max = stream_max,
    );
    // As root clamd drops to the clamav user, which cannot read our temp
    // dir; keep it running as us.
    if unsafe { libc::geteuid() } == 0 {
        text.push_str("User root\n");
    }
    std::fs::write(&conf, text)?;
    let child = spawn_quiet(clamd_binary(), vec![format!("--config-file={}", conf.display())])?;
    let server = ClamdServer {
        port,
        dir,
        db: db.to_owned(),
        child: Mutex::new(child),
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if ping(port) {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.lock().unwrap().try_wait() {
            let log = std::fs::read_to_string(server.dir.path().join("clamd.log")).unwrap_or_default();
            panic!("clamd exited with {status} before answering; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("clamd did not answer PING on port {port} within 90 s");
}

/// Spawns the command `build` makes so that it is killed when this process
/// exits, even if the test harness never runs destructors for statics. The
/// spawn happens on a thread that lives as long as the process, because the
/// kernel's parent-death signal follows the spawning thread.
pub fn spawn_tied(build: impl FnOnce() -> Command + Send + 'static) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;
    type Job = Box<dyn FnOnce() -> std::io::Result<Child> + Send>;
    type Request = (Job, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (job, reply) in rx {
                let _ = reply.send(job());
            }
        });
        Mutex::new(tx)
    });
    let job: Job = Box::new(move || {
        let mut command = build();
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command.spawn()
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender.lock().unwrap().send((job, reply_tx)).unwrap();
    reply_rx.recv().unwrap()
}

/// Spawns `program args` with its output discarded, tied to this process.
pub fn spawn_quiet(program: std::path::PathBuf, args: Vec<String>) -> std::io::Result<Child> {
    spawn_tied(move || {
        let mut command = Command::new(program);
        command.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        command
    })
}

/// Sends `command` (e.g. `RELOAD`) to the clamd on `port`; its answer.
pub fn command(port: u16, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("z{command}\0").as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).trim_end_matches('\0').to_owned())
}

/// Scans `bytes` with INSTREAM on the clamd on `port`; its answer
/// (e.g. `stream: OK`).
pub fn scan(port: u16, bytes: &[u8]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(b"zINSTREAM\0")?;
    stream.write_all(&(bytes.len() as u32).to_be_bytes())?;
    stream.write_all(bytes)?;
    stream.write_all(&0u32.to_be_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).trim_end_matches('\0').to_owned())
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"PONG")
}
