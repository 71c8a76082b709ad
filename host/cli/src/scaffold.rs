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

/// The contract every scaffold is built against: the newest this binary
/// runs, file by file as `wit/` has it (`released/` stays behind).
const CONTRACT: &[(&str, &str)] = &[
    ("wit/package.wit", include_str!("../../../wit/package.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
    ("wit/object.wit", include_str!("../../../wit/object.wit")),
    ("wit/stage.wit", include_str!("../../../wit/stage.wit")),
    ("wit/log.wit", include_str!("../../../wit/log.wit")),
    ("wit/clamav.wit", include_str!("../../../wit/clamav.wit")),
    ("wit/yara.wit", include_str!("../../../wit/yara.wit")),
    ("wit/storage.wit", include_str!("../../../wit/storage.wit")),
    ("wit/http.wit", include_str!("../../../wit/http.wit")),
    ("wit/worlds.wit", include_str!("../../../wit/worlds.wit")),
];

const COMMON: &[(&str, &str)] = &[
    ("README.md", include_str!("../templates/common/README.md")),
    ("test.sh", include_str!("../templates/common/test.sh")),
    ("testdata/sample.txt", include_str!("../templates/common/sample.txt")),
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
        for (placeholder, value) in &vars {
            text = text.replace(placeholder, value);
        }
        write(&root.join(path), &text)?;
    }
    for (path, wit) in CONTRACT {
        write(&root.join(path), wit)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A new file in `wit/` must reach the scaffolds too.
    #[test]
    fn scaffolds_carry_every_contract_file() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
        let mut on_disk: Vec<String> = std::fs::read_dir(&wit)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".wit"))
            .map(|name| format!("wit/{name}"))
            .collect();
        on_disk.sort();
        let mut carried: Vec<String> = CONTRACT.iter().map(|(path, _)| path.to_string()).collect();
        carried.sort();
        assert_eq!(carried, on_disk);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("deny-macros").is_ok());
        for bad in ["Deny", "-x", "x-", "a_b", ""] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
