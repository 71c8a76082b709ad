//! A misbehaving plugin for the sandbox tests. The `behaviour` setting picks
//! what it does wrong; each must be stopped by the host and reported as this
//! plugin's failure, never as a clean verdict.

use bucketscan_plugin_sdk::{
    Decision, Finding, Inspector, Level, PluginError, PluginInfo, Settings, Stage, Verdict, clamav, http, log,
};

struct Hostile;

impl Inspector for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("hostile", "6.6.6", "misbehaves on purpose")
    }

    fn inspect(stage: &Stage) -> Result<Decision, PluginError> {
        let settings = Settings::of(stage);
        let clean = Ok(Decision::Verdict(Verdict::Clean));
        let escape = |message: String| Err(PluginError::Other(message));
        match settings.text("behaviour")?.unwrap_or("none") {
            "none" => clean,
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("deliberate panic"),
            "sleep" => {
                let ms = settings.u64("sleep-ms")?.unwrap_or(3_600_000);
                // Tests wait for this line: the object was read by then.
                log(Level::Info, "sleeping", &[]);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(Decision::Continue)
            }
            "oversized" => Ok(Decision::Verdict(Verdict::Blocked("x".repeat(8 << 20)))),
            "many-findings" => Ok(Decision::Verdict(Verdict::Infected(
                (0..10_000)
                    .map(|i| Finding::new("hostile", &format!("sig-{i}")))
                    .collect(),
            ))),
            "no-findings" => Ok(Decision::Verdict(Verdict::Infected(Vec::new()))),
            "read-file" => match std::fs::read(settings.text("path")?.unwrap_or("/etc/passwd")) {
                Ok(bytes) => escape(format!("SANDBOX ESCAPE: read {} bytes", bytes.len())),
                Err(err) => escape(format!("read failed: {err}")),
            },
            "connect" => {
                let addr = settings.text("addr")?.unwrap_or("127.0.0.1:9");
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => escape(format!("SANDBOX ESCAPE: connected to {addr}")),
                    Err(err) => escape(format!("connect failed: {err}")),
                }
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                if vars.is_empty() {
                    clean
                } else {
                    escape(format!("SANDBOX ESCAPE: saw env {vars:?}"))
                }
            }
            "log-flood" => {
                for i in 0..10_000 {
                    log(
                        Level::Error,
                        &format!("line {i}\nlevel=ERROR forged\x1b[31m{}", "x".repeat(8 << 10)),
                        &[],
                    );
                }
                Ok(Decision::Continue)
            }
            "error-flood" => escape(format!("{}\nlevel=ERROR forged", "e".repeat(4 << 20))),
            "scan-without-grant" => match clamav::scan(&stage.object()) {
                Ok(_) => clean,
                Err(err) => escape(format!("scan failed: {}", err.explain())),
            },
            "object-flood" => {
                // Every handle lives in the host's table, outside the
                // plugin's memory limit.
                let hoard: Vec<_> = (0..100_000).map(|_| stage.object()).collect();
                escape(format!("SANDBOX ESCAPE: held {} object handles", hoard.len()))
            }
            "request-flood" => {
                let url = format!(
                    "http://{}/{}",
                    settings.text("host")?.unwrap_or("127.0.0.1"),
                    "u".repeat(4000)
                );
                let hoard: Vec<_> = (0..10_000)
                    .map(|_| {
                        let request = http::Request::new(&url);
                        request.set_body(&[0u8; 1 << 20]);
                        request
                    })
                    .collect();
                escape(format!("SANDBOX ESCAPE: built {} requests", hoard.len()))
            }
            "host-header" => {
                // A granted address, another virtual host behind it.
                let request = http::Request::new(settings.text("url")?.unwrap_or("http://127.0.0.1:9/"));
                request.set_header("Host", "internal-admin.example");
                match http::send(request) {
                    Ok(response) => escape(format!(
                        "SANDBOX ESCAPE: sent with a forged Host, got {}",
                        response.status()
                    )),
                    Err(err) => escape(format!("send refused: {}", err.explain())),
                }
            }
            "scan-flood" => {
                let object = stage.object();
                for _ in 0..1000 {
                    let _ = clamav::scan(&object);
                }
                clean
            }
            other => Err(PluginError::InvalidSettings(format!("unknown behaviour `{other}`"))),
        }
    }
}

bucketscan_plugin_sdk::export_inspector!(Hostile);
