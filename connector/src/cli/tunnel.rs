//! `ringtun tunnel ...`: the edge-backed commands.
//!
//! Each command has its own handler so the edge client can fill them in one by one. Until then
//! each answers [`Error::NotImplemented`], which `main` turns into exit code 2.

use super::{
    CleanupArgs, CreateArgs, DeleteArgs, GlobalArgs, InfoArgs, RouteDnsArgs, RouteTcpArgs, RunArgs,
};
use crate::error::{Error, Result};

/// `tunnel create NAME [--credentials-file FILE]`: create the tunnel at the edge, print its ID and
/// write its credentials ([`crate::credentials::Credentials::write`]).
pub fn create(_global: &GlobalArgs, _args: &CreateArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel create",
    })
}

/// `tunnel list`.
pub fn list(_global: &GlobalArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel list",
    })
}

/// `tunnel info NAME|ID [-o json]`.
pub fn info(_global: &GlobalArgs, _args: &InfoArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel info",
    })
}

/// `tunnel route dns NAME HOSTNAME`.
pub fn route_dns(_global: &GlobalArgs, _args: &RouteDnsArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel route dns",
    })
}

/// `tunnel route tcp NAME PORT`.
pub fn route_tcp(_global: &GlobalArgs, _args: &RouteTcpArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel route tcp",
    })
}

/// `tunnel delete NAME... [-f]`.
pub fn delete(_global: &GlobalArgs, _args: &DeleteArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel delete",
    })
}

/// `tunnel cleanup NAME...`.
pub fn cleanup(_global: &GlobalArgs, _args: &CleanupArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel cleanup",
    })
}

/// `tunnel run [NAME] [--url URL]`: the ingress rules come from
/// [`crate::config::Config::ingress_for`] with `--url`.
pub fn run(_global: &GlobalArgs, _args: &RunArgs) -> Result<()> {
    Err(Error::NotImplemented {
        command: "tunnel run",
    })
}
