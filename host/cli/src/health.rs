//! `bucketscan health --addr HOST:PORT [--ready]`: the container health
//! check. The image has no curl; this asks the agent's own endpoint and
//! exits 0 when it answers 200.

use anyhow::Context as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct HealthArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Ask /readyz (can it scan?) instead of /healthz (is it alive?).
    #[arg(long)]
    ready: bool,
}

pub fn run(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let path = if args.ready { "/readyz" } else { "/healthz" };
    let mut stream = TcpStream::connect_timeout(&args.addr, Duration::from_secs(3))
        .with_context(|| format!("connecting to {}", args.addr))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        args.addr
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status_line = response.lines().next().unwrap_or_default();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    println!("{path}: {body}");
    Ok(if status_line.split_whitespace().nth(1) == Some("200") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
