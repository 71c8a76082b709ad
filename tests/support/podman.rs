//! Containers for tests, with podman as this machine runs it (root, runc
//! with cgroupfs, explicit ulimits: see `scripts/image`). Each container is
//! removed when its guard drops.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `podman` with the runtime flags this machine needs.
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]);
    command
}

const ULIMITS: [&str; 4] = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

fn checked(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The agent image, built once per test run by `scripts/image` from this
/// run's `bucketscan` and the plugins `scripts/build-plugins` built.
pub fn agent_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Command::new(crate::workspace().join("scripts/image"))
            .arg("--binary")
            .arg(crate::bucketscan_bin())
            .args(["--tag", "localhost/bucketscan:test"])
            .output()
            .expect("scripts/image runs");
        checked("scripts/image", out)
    })
}

/// A volume mount, `HOST:CONTAINER[:ro]`.
pub fn mount(host: &Path, container: &str, read_only: bool) -> String {
    format!("{}:{container}{}", host.display(), if read_only { ":ro" } else { "" })
}

/// A running container; removed on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d` with `args` (options, then the image and its
    /// arguments) on the host's network, as the task's containers share
    /// one loopback.
    pub fn run(name: &str, args: &[String]) -> Self {
        let _ = podman().args(["rm", "-f", name]).output();
        let out = podman()
            .args(["run", "-d", "--name", name, "--network=host"])
            .args(ULIMITS)
            .args(args)
            .output()
            .unwrap();
        checked(&format!("podman run {name}"), out);
        Self { name: name.to_owned() }
    }

    pub fn logs(&self) -> String {
        let out = podman().args(["logs", &self.name]).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs `command` inside the container; its exit status.
    pub fn exec(&self, command: &[String]) -> Output {
        podman().arg("exec").arg(&self.name).args(command).output().unwrap()
    }

    /// `podman stop` with `timeout` (SIGTERM, then SIGKILL after it);
    /// the exit code and how long stopping took.
    pub fn stop(&self, timeout: Duration) -> (i32, Duration) {
        let started = Instant::now();
        let out = podman()
            .args(["stop", "--time", &timeout.as_secs().to_string(), &self.name])
            .output()
            .unwrap();
        let took = started.elapsed();
        checked(&format!("podman stop {}", self.name), out);
        let code = podman()
            .args(["inspect", "--format", "{{.State.ExitCode}}", &self.name])
            .output()
            .unwrap();
        let code = checked("podman inspect", code).parse().unwrap();
        (code, took)
    }

    /// Waits for `done` on the container's logs.
    pub fn wait_for_log(&self, what: &str, within: Duration, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let logs = self.logs();
            if done(&logs) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never happened; {} logs:\n{logs}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "--time", "1", &self.name]).output();
    }
}

/// Every path in `image`, from an export of a container made from it.
pub fn image_files(image: &str) -> Vec<String> {
    let name = format!("bucketscan-files-{}", std::process::id());
    let created = podman().args(["create", "--name", &name, image]).output().unwrap();
    checked("podman create", created);
    let export = podman().args(["export", &name]).output().unwrap();
    let _ = podman().args(["rm", "-f", &name]).output();
    let tar = checked_bytes("podman export", export);
    let mut listing = Command::new("tar")
        .args(["-t", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    listing.stdin.take().unwrap().write_all(&tar).unwrap();
    let out = listing.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn checked_bytes(what: &str, out: Output) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The image's size in bytes, as podman reports it.
pub fn image_size(image: &str) -> u64 {
    let out = podman()
        .args(["image", "inspect", "--format", "{{.Size}}", image])
        .output()
        .unwrap();
    checked("podman image inspect", out).parse().unwrap()
}
