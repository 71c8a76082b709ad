//! Which addresses a stage's requests may reach: never link-local or cloud
//! metadata, private networks only when the grant names them.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses no grant makes reachable: cloud metadata and credential
/// endpoints, link-local, multicast, broadcast and unspecified addresses.
pub fn is_always_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            v4.is_link_local() // 169.254/16: EC2 IMDS, ECS credentials, time, DNS
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0 // "this network"
                || [a, b, c, d] == [168, 63, 129, 16] // Azure wire server
                || [a, b, c, d] == [100, 100, 100, 200] // Alibaba Cloud metadata
                || [a, b, c, d] == [192, 0, 0, 192] // Oracle Cloud metadata
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0xfd00 && s[1] == 0x0ec2) // AWS fd00:ec2::/32: IMDS ::254, DNS ::253, NTP ::123, ::23
                || (s[0] == 0xfd20 && s[1] == 0x00ce) // GCP metadata fd20:ce::254
                || v6.is_unspecified()
                || v6.is_multicast()
                || embedded_v4(v6).is_some_and(|v4| is_always_forbidden(IpAddr::V4(v4)))
        }
    }
}

/// Addresses that are not on the public internet: loopback, RFC 1918,
/// CGNAT, benchmarking, reserved, unique-local, and IPv6 forms that carry
/// an IPv4 address (NAT64, 6to4, Teredo, mapped). Refused unless the
/// stage's `http-private` grant names their network.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF 192.0.0/24
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32
                || embedded_v4(v6).is_some()
        }
    }
}

/// The IPv4 address inside an IPv6 one that routes to it: v4-mapped,
/// v4-compatible, NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
        return Some(low()); // v4-compatible ::a.b.c.d
    }
    if (s[0] == 0x64 && s[1] == 0xff9b) && (s[2..6] == [0; 4] || s[2] == 1) {
        return Some(low());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Which addresses one stage's requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressPolicy {
    /// Private networks the stage opted into (`grants.http-private`).
    pub private_allowed: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(mut private_allowed: Vec<IpNet>) -> Self {
        private_allowed.sort();
        private_allowed.dedup();
        Self { private_allowed }
    }

    /// `Err` naming why `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), ForbiddenAddress> {
        if is_always_forbidden(ip) {
            return Err(ForbiddenAddress::Always(ip));
        }
        if is_private(ip) && !self.private_allowed.iter().any(|net| net.contains(&ip)) {
            return Err(ForbiddenAddress::PrivateNotGranted(ip));
        }
        Ok(())
    }
}

/// Why an address may not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForbiddenAddress {
    #[error("{0} is a link-local, multicast or cloud metadata address; always refused")]
    Always(IpAddr),
    #[error(
        "{0} is a private address (loopback, RFC 1918, CGNAT, ULA, NAT64, …); refused unless the stage's \
         `http-private` grant names its network"
    )]
    PrivateNotGranted(IpAddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_and_link_local_addresses_are_always_refused() {
        let open = AddressPolicy::new(vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        for addr in [
            "169.254.169.254",
            "169.254.170.2",
            "fd00:ec2::254",
            "fd00:ec2::23",
            "fd20:ce::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "168.63.129.16",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
        ] {
            assert!(is_always_forbidden(ip(addr)), "{addr}");
            assert!(
                open.check(ip(addr)).is_err(),
                "{addr} refused even when every network is granted"
            );
        }
    }

    #[test]
    fn private_addresses_need_an_explicit_grant() {
        let none = AddressPolicy::default();
        for addr in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "198.18.0.1",
            "::1",
            "fd12:3456::1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378::1",
            "::ffff:10.0.0.1",
        ] {
            let err = none.check(ip(addr)).unwrap_err();
            assert_eq!(err, ForbiddenAddress::PrivateNotGranted(ip(addr)), "{addr}");
            assert!(err.to_string().contains("private address"), "{addr}: {err}");
        }
        assert!(none.check(ip("93.184.216.34")).is_ok());
        assert!(none.check(ip("2606:2800:220:1::1")).is_ok());
        let loopback = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(loopback.check(ip("127.0.0.1")).is_ok());
        assert!(loopback.check(ip("10.0.0.1")).is_err(), "only the granted network");
    }
}
