use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|net| net.parse().unwrap()).collect()
}

#[test]
fn non_public_addresses_are_refused_in_every_spelling() {
    for refused in [
        "127.0.0.1",
        "169.254.169.254",
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0:127.0.0.1",
        "::ffff:0:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "::127.0.0.1",
        "::2",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::1",
        "fd00::1",
        "fe80::1",
    ] {
        assert!(
            check_address(ip(refused), &[]).is_err(),
            "{refused} was allowed"
        );
    }
    assert!(check_address(ip("93.184.216.34"), &[]).is_ok());
    assert!(check_address(ip("2606:2800:220:1:248:1893:25c8:1946"), &[]).is_ok());
}

#[test]
fn each_ipv6_form_is_judged_by_the_ipv4_it_carries() {
    for (address, kind) in [
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:0:127.0.0.1", "loopback"),
        ("::ffff:0:169.254.169.254", "link-local (cloud metadata)"),
        ("::10.0.0.1", "private"),
        ("::2", "unspecified"),
        ("64:ff9b::192.168.0.1", "private"),
        ("64:ff9b:1::169.254.169.254", "link-local (cloud metadata)"),
        // A /48 local NAT64 prefix puts 169.254.169.254 in bits 48-63 and 72-87, a /64 one
        // puts 10.0.0.1 in bits 72-103.
        ("64:ff9b:1:0:a:0:100:0", "private"),
        ("64:ff9b:1:a9fe:a9:fe00::", "link-local (cloud metadata)"),
        ("2002:a9fe:a9fe::1", "link-local (cloud metadata)"),
        // Teredo, client 10.0.0.1 (stored XOR-ed) behind the public server 65.54.227.120.
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "private"),
        // Teredo, server 192.168.1.1, client 8.8.8.8.
        ("2001:0:c0a8:101::f7f7:f7f7", "private"),
        // Teredo between public addresses, and local-use NAT64 to a public address: still
        // not globally reachable addresses.
        ("2001:0:4136:e378::f7f7:f7f7", "Teredo"),
        ("64:ff9b:1::8.8.8.8", "local NAT64"),
    ] {
        assert_eq!(non_public_kind(ip(address)), Some(kind), "{address}");
        assert!(check_address(ip(address), &[]).is_err(), "{address}");
    }
    for public in [
        "::ffff:8.8.8.8",
        "::ffff:0:8.8.8.8",
        "::8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
    ] {
        assert_eq!(non_public_kind(ip(public)), None, "{public}");
        assert!(check_address(ip(public), &[]).is_ok(), "{public}");
    }
}

#[test]
fn a_refusal_names_the_ipv4_address_and_the_form() {
    assert_eq!(
        check_address(ip("::ffff:0:169.254.169.254"), &[]).unwrap_err(),
        "::ffff:0:a9fe:a9fe carries 169.254.169.254 (IPv4-translated form), a link-local \
         (cloud metadata) address; name it in [http] networks to allow it"
    );
    assert_eq!(
        check_address(ip("10.0.0.1"), &[]).unwrap_err(),
        "10.0.0.1 is a private address; name it in [http] networks to allow it"
    );
}

#[test]
fn named_networks_are_allowed_including_embedded_forms() {
    let loopback = nets(&["127.0.0.0/8"]);
    for allowed in [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:0:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::127.0.0.1",
        "2002:7f00:1::1",
        // Teredo, client 127.0.0.1.
        "2001:0:4136:e378::80ff:fffe",
    ] {
        assert!(check_address(ip(allowed), &loopback).is_ok(), "{allowed}");
        // The IP-literal check in the http capability matches the same address.
        assert!(loopback[0].contains(&canonical(ip(allowed))), "{allowed}");
    }
    for refused in [
        "169.254.169.254",
        "::ffff:0:169.254.169.254",
        "64:ff9b::169.254.169.254",
    ] {
        assert!(check_address(ip(refused), &loopback).is_err(), "{refused}");
    }
    // Where a local-use NAT64 address carries its IPv4 address depends on the site's prefix
    // length: an IPv4 network cannot name it, its IPv6 prefix can.
    let local_nat64 = ip("64:ff9b:1::127.0.0.1");
    assert!(check_address(local_nat64, &loopback).is_err());
    assert!(check_address(local_nat64, &nets(&["64:ff9b:1::/48"])).is_ok());
}
