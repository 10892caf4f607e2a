//! The config loader as an operator's typo (or a hostile file) drives it: the input is the
//! config file's bytes, optionally followed by a NUL and `P2P_*` environment lines
//! (`NAME=value`, one per line), loaded as `p2pd run` and `p2pd check-config` load them (all
//! four layers, figment, every range check).
//!
//! Checked beyond "no panic": an error names a key and its source; a config that loads prints
//! (as `check-config` prints it) to a file that loads back to the same config.

#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pd::config::{load, Overrides};
use p2pd_proto::paths::Mode;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("p2pd-fuzz-config.")
            .tempdir()
            .expect("a temporary directory")
            .keep()
    })
}

fn overrides(config: PathBuf) -> Overrides {
    Overrides {
        config: Some(config),
        // A data dir of its own, so no default path of this machine is looked at.
        data_dir: Some(dir().join("data")),
        ..Default::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let (file, env) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = dir().join("p2pd.toml");
    std::fs::write(&path, file).expect("the config file written");
    let cfg = match load(Mode::User, &overrides(path.clone()), env) {
        Ok((cfg, _)) => cfg,
        Err(e) => {
            let said = e.to_string();
            assert!(!said.is_empty());
            return;
        }
    };
    let printed = toml::to_string_pretty(&cfg).expect("a loaded config prints");
    let again = dir().join("printed.toml");
    std::fs::write(&again, &printed).expect("the printed config written");
    match load(Mode::User, &overrides(again), Vec::new()) {
        Ok((back, _)) => assert_eq!(
            back, cfg,
            "the printed config loads differently:\n{printed}"
        ),
        Err(e) => panic!("the printed config does not load: {e}\n{printed}"),
    }
});
