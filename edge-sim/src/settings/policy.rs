//! The replica choice policies a tunnel can use (`--lb-policy`, the admin API's `lb_policy`).

/// How the public side chooses among a tunnel's connectors (replicas).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LbPolicy {
    /// Of two connectors picked at random, the one with fewer outstanding streams per unit of
    /// weight (`(outstanding + 1) / weight`).
    #[default]
    P2c,
    /// Smooth weighted round-robin (equal weights: plain rotation).
    RoundRobin,
    /// At random, with probability proportional to weight.
    Random,
    /// p2c among the connectors with a live link in the public data center (`--public-dc`),
    /// using such a link; p2c among all when none has one.
    SameDcFirst,
}

impl LbPolicy {
    /// Every policy, in the order the error messages list them.
    pub const ALL: [LbPolicy; 4] = [
        LbPolicy::P2c,
        LbPolicy::RoundRobin,
        LbPolicy::Random,
        LbPolicy::SameDcFirst,
    ];

    /// The policy's name in flags, the admin API and the registry database.
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::P2c => "p2c",
            LbPolicy::RoundRobin => "round-robin",
            LbPolicy::Random => "random",
            LbPolicy::SameDcFirst => "same-dc-first",
        }
    }
}

impl std::fmt::Display for LbPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LbPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "p2c" | "least-outstanding" => Ok(LbPolicy::P2c),
            "round-robin" | "rr" => Ok(LbPolicy::RoundRobin),
            "random" => Ok(LbPolicy::Random),
            "same-dc-first" => Ok(LbPolicy::SameDcFirst),
            other => Err(format!(
                "unknown load balancing policy {other:?}; choose p2c, round-robin, random or same-dc-first"
            )),
        }
    }
}
