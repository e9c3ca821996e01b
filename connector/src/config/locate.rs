//! Where the config file is found when `--config` is not given.
//!
//! Order, first existing file wins:
//! 1. `--config FILE`, or `$RINGTUN_CONFIG` (the CLI folds the variable into the flag). A file
//!    named this way must exist.
//! 2. `~/.ringtun/config.yml`, then `~/.ringtun/config.yaml`;
//! 3. `~/.cloudflared/config.yml`, then `~/.cloudflared/config.yaml`, so a cloudflared user's
//!    existing file is picked up;
//! 4. `/etc/ringtun/config.yml`, then `/etc/ringtun/config.yaml`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default places, in search order, given the home directory.
pub fn default_locations(home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = home {
        dirs.push(home.join(".ringtun"));
        dirs.push(home.join(".cloudflared"));
    }
    dirs.push(PathBuf::from("/etc/ringtun"));
    dirs.iter()
        .flat_map(|d| [d.join("config.yml"), d.join("config.yaml")])
        .collect()
}

/// The config file to use: `explicit` if given, else the first default location that exists.
pub fn find_config_file(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let candidates = default_locations(home.as_deref());
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::ConfigNotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_ringtun_then_cloudflared_then_etc() {
        let l = default_locations(Some(Path::new("/home/u")));
        let l: Vec<_> = l.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(
            l,
            [
                "/home/u/.ringtun/config.yml",
                "/home/u/.ringtun/config.yaml",
                "/home/u/.cloudflared/config.yml",
                "/home/u/.cloudflared/config.yaml",
                "/etc/ringtun/config.yml",
                "/etc/ringtun/config.yaml",
            ]
        );
    }

    #[test]
    fn explicit_wins() {
        assert_eq!(
            find_config_file(Some(Path::new("/x/y.yml"))).ok(),
            Some(PathBuf::from("/x/y.yml"))
        );
    }
}
