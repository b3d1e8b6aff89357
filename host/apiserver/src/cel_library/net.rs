//! Kubernetes' IP and CIDR libraries for CEL (`k8s.io/apiserver/pkg/cel/library/ip.go`,
//! `cidr.go`): `ip(s)`, `isIP(s)`, `ip.isCanonical(s)`, and on an address `family`,
//! `isUnspecified`, `isLoopback`, `isLinkLocalMulticast`, `isLinkLocalUnicast`,
//! `isGlobalUnicast`; `cidr(s)`, `isCIDR(s)`, and on a prefix `containsIP`, `containsCIDR`, `ip`,
//! `masked`, `prefixLength`. As there, an address with a zone or an IPv4-mapped IPv6 address is
//! refused, and IPv4 octets take no leading zeros.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cel::common::types::{CelInt, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{boolean, take, text};

const IP: Type = Type::new_unspecified_type("net.IP");
static IP_TYPE: Type = IP;
const CIDR: Type = Type::new_unspecified_type("net.CIDR");
static CIDR_TYPE: Type = CIDR;

/// An IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(IpAddr);

/// An IP prefix: its address as written, and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

opaque!(Ip, IP_TYPE);
opaque!(Cidr, CIDR_TYPE);

/// Why a string is not an address or a prefix, in the libraries' words.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    /// Not an address.
    #[error("IP Address {0:?} parse error")]
    Address(String),
    /// Not a prefix.
    #[error("network address parse error during conversion from CIDR {0:?}")]
    Prefix(String),
    /// An address with a zone.
    #[error("IP address with zone value is not allowed")]
    Zone,
    /// An IPv4-mapped IPv6 address.
    #[error("IPv4-mapped IPv6 address is not allowed")]
    Mapped,
}

/// Parses an address as `netip.ParseAddr` does, then refuses what the library refuses.
fn parse_ip(text: &str) -> Result<IpAddr, NetError> {
    if text.contains('%') {
        return Err(NetError::Zone);
    }
    let addr: IpAddr = text
        .parse()
        .map_err(|_| NetError::Address(text.to_owned()))?;
    if addr.is_ipv4()
        && text
            .split('.')
            .any(|octet| octet.len() > 1 && octet.starts_with('0'))
    {
        return Err(NetError::Address(text.to_owned()));
    }
    if let IpAddr::V6(v6) = addr
        && v6.to_ipv4_mapped().is_some()
    {
        return Err(NetError::Mapped);
    }
    Ok(addr)
}

/// Parses a prefix as `netip.ParsePrefix` does (the length in decimal, within the family's).
fn parse_cidr(text: &str) -> Result<Cidr, NetError> {
    let bad = || NetError::Prefix(text.to_owned());
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr = parse_ip(addr)?;
    if len.is_empty()
        || len.len() > 1 && len.starts_with('0')
        || !len.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok(Cidr { addr, len })
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Cidr {
    /// The prefix with its host bits cleared.
    fn masked(self) -> Self {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let host = u32::from(width - self.len);
        let mask = if host >= 128 { 0 } else { u128::MAX << host };
        let network = bits(self.addr) & mask;
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(network).unwrap_or(0))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(network)),
        };
        Self { addr, ..self }
    }

    fn contains(self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4()
            && (Self {
                addr,
                len: self.len,
            })
            .masked()
            .addr
                == self.masked().addr
    }
}

/// Registers the libraries on `env`.
pub(super) fn declare(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], ip)?;
    env.add_overload("isIP", "is_ip", vec![STRING_TYPE], is_ip)?;
    env.add_overload(
        "ip.isCanonical",
        "ip_is_canonical",
        vec![STRING_TYPE],
        is_canonical,
    )?;
    for (name, op) in [
        ("family", family as cel::common::functions::Function),
        ("isUnspecified", is_unspecified),
        ("isLoopback", is_loopback),
        ("isLinkLocalMulticast", is_link_local_multicast),
        ("isLinkLocalUnicast", is_link_local_unicast),
        ("isGlobalUnicast", is_global_unicast),
    ] {
        env.add_member_overload(name, &format!("ip_{name}"), IP, vec![], op)?;
    }
    env.add_overload("string", "ip_to_string", vec![IP], ip_to_string)?;
    env.add_overload("string", "cidr_to_string", vec![CIDR], cidr_to_string)?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], cidr)?;
    env.add_overload("isCIDR", "is_cidr", vec![STRING_TYPE], is_cidr)?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip",
        CIDR,
        vec![IP],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_string",
        CIDR,
        vec![STRING_TYPE],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        CIDR,
        vec![CIDR],
        contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        CIDR,
        vec![STRING_TYPE],
        contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr_ip", CIDR, vec![], cidr_ip)?;
    env.add_member_overload("masked", "cidr_masked", CIDR, vec![], masked)?;
    env.add_member_overload(
        "prefixLength",
        "cidr_prefix_length",
        CIDR,
        vec![],
        prefix_length,
    )?;
    Ok(())
}

/// An address argument, given as an address or as a string.
fn ip_arg(value: &dyn Val, function: &str) -> Result<IpAddr, ExecutionError> {
    if let Some(ip) = value.downcast_ref::<Ip>() {
        return Ok(ip.0);
    }
    parse_ip(text(value, function)?).map_err(|e| ExecutionError::function_error(function, e))
}

/// A prefix argument, given as a prefix or as a string.
fn cidr_arg(value: &dyn Val, function: &str) -> Result<Cidr, ExecutionError> {
    if let Some(c) = value.downcast_ref::<Cidr>() {
        return Ok(*c);
    }
    parse_cidr(text(value, function)?).map_err(|e| ExecutionError::function_error(function, e))
}

fn ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    Ok(CowVal::owned(Ip(ip_arg(s.as_ref(), "ip")?)))
}

fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    boolean(parse_ip(text(s.as_ref(), "isIP")?).is_ok())
}

/// Whether the string is the address's canonical form (RFC 5952 for IPv6).
fn is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let written = text(s.as_ref(), "ip.isCanonical")?;
    let addr = ip_arg(s.as_ref(), "ip.isCanonical")?;
    boolean(addr.to_string() == written)
}

fn with_ip<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
    function: &str,
    f: fn(IpAddr) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a] = take(args)?;
    boolean(f(ip_arg(a.as_ref(), function)?))
}

fn family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a] = take(args)?;
    let family = if ip_arg(a.as_ref(), "family")?.is_ipv4() {
        4
    } else {
        6
    };
    Ok(CowVal::owned(CelInt::from(family)))
}

fn is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    with_ip(args, "isUnspecified", |a| a.is_unspecified())
}

fn is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    with_ip(args, "isLoopback", |a| a.is_loopback())
}

/// 224.0.0.0/24 and ff02::/16, as Go's `IsLinkLocalMulticast`.
fn link_local_multicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
}

/// 169.254.0.0/16 and fe80::/10, as Go's `IsLinkLocalUnicast`.
fn link_local_unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_multicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    with_ip(args, "isLinkLocalMulticast", link_local_multicast)
}

fn is_link_local_unicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    with_ip(args, "isLinkLocalUnicast", link_local_unicast)
}

/// Go's `IsGlobalUnicast`: none of unspecified, loopback, multicast, link-local, broadcast
/// (private addresses count).
fn is_global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    with_ip(args, "isGlobalUnicast", |a| {
        !(a.is_unspecified()
            || a.is_loopback()
            || a.is_multicast()
            || link_local_unicast(a)
            || a == IpAddr::V4(Ipv4Addr::BROADCAST))
    })
}

/// `string(ip)`: the address in its canonical form (RFC 5952 for IPv6).
fn ip_to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a] = take(args)?;
    let addr = ip_arg(a.as_ref(), "string")?;
    Ok(CowVal::owned(cel::common::types::CelString::from(
        addr.to_string(),
    )))
}

/// `string(cidr)`: `address/length`, the address as given (not masked).
fn cidr_to_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    let c = cidr_arg(c.as_ref(), "string")?;
    let text = format!("{}/{}", c.addr, c.len);
    Ok(CowVal::owned(cel::common::types::CelString::from(text)))
}

fn cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    Ok(CowVal::owned(cidr_arg(s.as_ref(), "cidr")?))
}

fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    boolean(parse_cidr(text(s.as_ref(), "isCIDR")?).is_ok())
}

fn contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c, a] = take(args)?;
    let c = cidr_arg(c.as_ref(), "containsIP")?;
    boolean(c.contains(ip_arg(a.as_ref(), "containsIP")?))
}

fn contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c, other] = take(args)?;
    let c = cidr_arg(c.as_ref(), "containsCIDR")?;
    let other = cidr_arg(other.as_ref(), "containsCIDR")?;
    boolean(other.len >= c.len && c.contains(other.addr))
}

fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    Ok(CowVal::owned(Ip(cidr_arg(c.as_ref(), "ip")?.addr)))
}

fn masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    Ok(CowVal::owned(cidr_arg(c.as_ref(), "masked")?.masked()))
}

fn prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    let len = cidr_arg(c.as_ref(), "prefixLength")?.len;
    Ok(CowVal::owned(CelInt::from(i64::from(len))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_prefixes_parse_as_the_libraries_take_them() {
        assert!(parse_ip("10.0.0.1").is_ok());
        assert!(parse_ip("2001:db8::1").is_ok());
        assert_eq!(parse_ip("fe80::1%eth0"), Err(NetError::Zone));
        assert_eq!(parse_ip("::ffff:1.2.3.4"), Err(NetError::Mapped));
        assert!(parse_ip("010.0.0.1").is_err());
        assert!(parse_ip("1.2.3").is_err());
        assert_eq!(parse_cidr("10.0.0.0/8").map(|c| c.len), Ok(8));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "::/129",
            "10.0.0.0/",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        let c = parse_cidr("192.168.1.7/24").unwrap();
        assert_eq!(c.masked().addr.to_string(), "192.168.1.0");
        assert!(c.contains("192.168.1.200".parse().unwrap()));
        assert!(!c.contains("192.168.2.1".parse().unwrap()));
        assert!(
            parse_cidr("::/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            !parse_cidr("0.0.0.0/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
    }
}
