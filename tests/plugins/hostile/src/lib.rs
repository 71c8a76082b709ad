//! A misbehaving plugin for the sandbox tests. The `behaviour` setting picks
//! what it does wrong; each must be stopped by the host and reported as this
//! plugin's failure, never as a clean verdict.

use bucketscan_plugin_sdk::{Decision, Finding, Inspector, Level, Object, PluginInfo, Settings, Verdict, clamav, log};

struct Hostile;

impl Inspector for Hostile {
    fn info() -> PluginInfo {
        PluginInfo::new("hostile", "6.6.6", "misbehaves on purpose")
    }

    fn inspect(object: &Object, settings: &Settings, _so_far: Option<&Verdict>) -> Result<Decision, String> {
        let clean = Ok(Decision::Verdict(Verdict::Clean));
        match settings.get("behaviour").unwrap_or("none") {
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
            "read-file" => match std::fs::read(settings.get("path").unwrap_or("/etc/passwd")) {
                Ok(bytes) => Err(format!("SANDBOX ESCAPE: read {} bytes", bytes.len())),
                Err(err) => Err(format!("read failed: {err}")),
            },
            "connect" => {
                let addr = settings.get("addr").unwrap_or("127.0.0.1:9");
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => Err(format!("SANDBOX ESCAPE: connected to {addr}")),
                    Err(err) => Err(format!("connect failed: {err}")),
                }
            }
            "env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                if vars.is_empty() {
                    clean
                } else {
                    Err(format!("SANDBOX ESCAPE: saw env {vars:?}"))
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
            "error-flood" => Err(format!("{}\nlevel=ERROR forged", "e".repeat(4 << 20))),
            "scan-without-grant" => match clamav::scan(object) {
                Ok(_) => clean,
                Err(err) => Err(format!("scan failed: {}", err.message)),
            },
            other => Err(format!("unknown behaviour `{other}`")),
        }
    }
}

bucketscan_plugin_sdk::export_inspector!(Hostile);
