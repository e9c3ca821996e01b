//! Finding the edge's admin API: address and bearer token.

use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::GlobalArgs;
use crate::error::{Error, Result};

/// The edge's default state directory, relative to the working directory.
pub const DEFAULT_EDGE_STATE_DIR: &str = "ringtun-edge-state";

/// The admin API bearer token. Its `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// The token text, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for ApiToken {
    type Err = Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Infallible> {
        Ok(ApiToken(s.trim().to_owned()))
    }
}

/// The token file the edge writes in its default state directory.
pub fn default_token_file() -> PathBuf {
    Path::new(DEFAULT_EDGE_STATE_DIR).join("admin-token")
}

impl GlobalArgs {
    /// The admin API token: `--api-token`, `$RINGTUN_API_TOKEN`, else the file the edge wrote in
    /// its default state directory.
    pub fn api_token(&self) -> Result<ApiToken> {
        if let Some(t) = &self.api_token {
            return Ok(t.clone());
        }
        let path = default_token_file();
        let text = std::fs::read_to_string(&path)
            .map_err(|source| Error::ApiTokenMissing { path, source })?;
        Ok(ApiToken(text.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_hidden() {
        let t: ApiToken = "s3cret\n"
            .parse()
            .unwrap_or_else(|e: Infallible| match e {});
        assert_eq!(format!("{t:?}"), "***");
        assert_eq!(t.expose(), "s3cret");
    }
}
