//! PURE: each microVM's network — a /30 of the configured range (default `10.213.0.0/16`) and a
//! tap device. Within a /30 the host side of the tap takes the first usable address and the
//! guest the second; the guest's address goes on the kernel command line as
//! `ip=<guest>::<host>:<netmask>::eth0:off` and is the instance's IP for probes and the API.
//!
//! The slot (which /30) is derived from the instance name, so the same instance gets the same
//! addresses across agent restarts; a slot another live instance holds is skipped (linear
//! probing), so two instances never share one. Tap names are `kt` + 12 hex digits of the
//! instance name's hash: stable, unique in practice, and within Linux's 15-character limit.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// The range microVM addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: u32,
    prefix: u8,
}

/// Why a range cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0:?} is not an IPv4 range like 10.213.0.0/16")]
    Malformed(String),
    #[error("{0:?} is too small: it needs room for at least one /30")]
    TooSmall(String),
}

impl std::str::FromStr for Network {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || NetworkError::Malformed(text.to_owned());
        let (address, prefix) = text.split_once('/').ok_or_else(malformed)?;
        let address: Ipv4Addr = address.parse().map_err(|_| malformed())?;
        let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
        if prefix > 30 {
            return Err(NetworkError::TooSmall(text.to_owned()));
        }
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(Self {
            base: u32::from(address) & mask,
            prefix,
        })
    }
}

impl Default for Network {
    fn default() -> Self {
        Self {
            base: u32::from(Ipv4Addr::new(10, 213, 0, 0)),
            prefix: 16,
        }
    }
}

/// The addresses of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub slot: u32,
    /// The host side of the tap (the guest's gateway).
    pub host: Ipv4Addr,
    pub guest: Ipv4Addr,
    pub netmask: Ipv4Addr,
}

impl Lease {
    /// The kernel's `ip=` parameter for the guest.
    pub fn kernel_ip(&self) -> String {
        format!(
            "ip={}::{}:{}::eth0:off",
            self.guest, self.host, self.netmask
        )
    }
}

impl Network {
    /// How many /30s the range holds.
    pub fn slots(&self) -> u32 {
        1u32 << (30 - u32::from(self.prefix))
    }

    /// The addresses of slot `slot` (taken modulo the range).
    pub fn lease(&self, slot: u32) -> Lease {
        let slot = slot % self.slots();
        let start = self.base + slot * 4;
        Lease {
            slot,
            host: Ipv4Addr::from(start + 1),
            guest: Ipv4Addr::from(start + 2),
            netmask: Ipv4Addr::new(255, 255, 255, 252),
        }
    }

    /// The slot for `instance`: its preferred one, or the next free after it. `None` when
    /// every slot is taken.
    pub fn choose(&self, instance: &str, taken: &BTreeSet<u32>) -> Option<Lease> {
        let slots = self.slots();
        let preferred = hash(instance) % slots;
        (0..slots)
            .map(|i| (preferred + i) % slots)
            .find(|slot| !taken.contains(slot))
            .map(|slot| self.lease(slot))
    }
}

/// The tap device of `instance`.
pub fn tap_name(instance: &str) -> String {
    let digest = Sha256::digest(instance.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("kt{hex}")
}

fn hash(text: &str) -> u32 {
    let digest = Sha256::digest(text.as_bytes());
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_hold_their_slots() {
        let cases = [
            ("10.213.0.0/16", Ok(16_384)),
            ("10.213.7.9/24", Ok(64)),
            ("192.168.249.0/30", Ok(1)),
            (
                "10.0.0.0/31",
                Err(NetworkError::TooSmall("10.0.0.0/31".into())),
            ),
            (
                "10.0.0/16",
                Err(NetworkError::Malformed("10.0.0/16".into())),
            ),
            ("10.0.0.0", Err(NetworkError::Malformed("10.0.0.0".into()))),
        ];
        for (text, expected) in cases {
            assert_eq!(
                text.parse::<Network>().map(|n| n.slots()),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn a_slot_is_a_slash_30_with_host_then_guest() {
        let network: Network = "10.213.0.0/16".parse().unwrap();
        let lease = network.lease(3);
        assert_eq!(
            (lease.host, lease.guest, lease.netmask),
            (
                Ipv4Addr::new(10, 213, 0, 13),
                Ipv4Addr::new(10, 213, 0, 14),
                Ipv4Addr::new(255, 255, 255, 252)
            )
        );
        assert_eq!(
            lease.kernel_ip(),
            "ip=10.213.0.14::10.213.0.13:255.255.255.252::eth0:off"
        );
    }

    #[test]
    fn an_instance_keeps_its_slot_and_collisions_move_to_the_next_free_one() {
        let network: Network = "10.213.0.0/16".parse().unwrap();
        let first = network
            .choose("keel-demo-web-1-0", &BTreeSet::new())
            .unwrap();
        assert_eq!(
            network.choose("keel-demo-web-1-0", &BTreeSet::new()),
            Some(first),
            "stable across restarts"
        );
        let taken = BTreeSet::from([first.slot]);
        let moved = network.choose("keel-demo-web-1-0", &taken).unwrap();
        assert_eq!(moved.slot, (first.slot + 1) % network.slots());
        let small: Network = "10.0.0.0/29".parse().unwrap();
        assert_eq!(small.choose("x", &BTreeSet::from([0, 1])), None, "full");
    }

    #[test]
    fn tap_names_are_stable_distinct_and_short() {
        let a = tap_name("keel-demo-web-1-0");
        assert_eq!(a, tap_name("keel-demo-web-1-0"));
        assert_ne!(a, tap_name("keel-demo-web-1-1"));
        assert!(a.len() <= 15 && a.starts_with("kt"), "{a}");
    }
}
