//! `bucketscan plugin new --lang rust|python|js NAME`: a ready-to-build
//! inspector plugin with the host's own copy of the contract, a build
//! script and a test that runs it through `bucketscan plugin run`.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and dashes.
    name: String,
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where to create the plugin's directory (default: here).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// The contract every scaffold is built against: the one this binary runs.
const CONTRACT_WIT: &str = include_str!("../../../wit/plugin.wit");

const COMMON: &[(&str, &str)] = &[
    ("README.md", include_str!("../templates/common/README.md")),
    ("test.sh", include_str!("../templates/common/test.sh")),
    ("testdata/sample.txt", include_str!("../templates/common/sample.txt")),
    ("wit/plugin.wit", CONTRACT_WIT),
];

fn files(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("../templates/rust/src/lib.rs")),
            ("build.sh", include_str!("../templates/rust/build.sh")),
        ],
        Lang::Python => &[
            ("app.py", include_str!("../templates/python/app.py")),
            ("build.sh", include_str!("../templates/python/build.sh")),
        ],
        Lang::Js => &[
            ("plugin.js", include_str!("../templates/js/plugin.js")),
            ("build.mjs", include_str!("../templates/js/build.mjs")),
            ("build.sh", include_str!("../templates/js/build.sh")),
        ],
    }
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    validate_name(&args.name)?;
    let root = args.dir.join(&args.name);
    if root.exists() && root.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(
            "{} already exists and is not empty; choose another name or --dir",
            root.display()
        );
    }
    let vars = [
        ("{{name}}", args.name.clone()),
        ("{{file_name}}", args.name.replace('-', "_")),
        ("{{contract}}", bucketscan_engine::contract::HOST_VERSION.to_owned()),
        ("{{lang}}", format!("{:?}", args.lang)),
    ];
    for (path, template) in COMMON.iter().chain(files(args.lang)) {
        let mut text = template.to_string();
        if *path != "wit/plugin.wit" {
            for (placeholder, value) in &vars {
                text = text.replace(placeholder, value);
            }
        }
        write(&root.join(path), &text)?;
    }
    println!(
        "created {} ({:?} inspector plugin, contract {})",
        root.display(),
        args.lang,
        vars[2].1
    );
    println!("next: cd {} && ./test.sh", root.display());
    Ok(ExitCode::SUCCESS)
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 64;
    if !valid {
        bail!(
            "plugin name `{name}`: use lowercase letters, digits and dashes, starting with a letter (e.g. `deny-macros`)"
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if path.extension().is_some_and(|ext| ext == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
