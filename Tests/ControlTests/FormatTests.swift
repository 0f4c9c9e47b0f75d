import XCTest
@testable import Control
import IPVS

final class FormatTests: XCTestCase {
    func testPrintLargeNumThresholds() {
        let f = IpvsadmFormat.largeNumber
        XCTAssertEqual(f(0, false), "        0")
        XCTAssertEqual(f(99_999_999, false), " 99999999")
        XCTAssertEqual(f(100_000_000, false), "  100000K")
        XCTAssertEqual(f(123_456_789, false), "  123456K")
        XCTAssertEqual(f(999_999_999, false), "  999999K")
        XCTAssertEqual(f(1_000_000_000, false), "    1000M")
        XCTAssertEqual(f(99_999_999_999, false), "   99999M")
        XCTAssertEqual(f(100_000_000_000, false), "     100G")
        XCTAssertEqual(f(99_999_999_999_999, false), "   99999G")
        XCTAssertEqual(f(100_000_000_000_000, false), "     100T")
        XCTAssertEqual(f(UInt64.max, false), "18446744T")
    }

    func testPrintLargeNumExact() {
        let f = IpvsadmFormat.largeNumber
        XCTAssertEqual(f(5, true), "        5")
        XCTAssertEqual(f(12_345_678, true), " 12345678")
        XCTAssertEqual(f(123_456_789, true), " 123456789")
        XCTAssertEqual(f(UInt64.max, true), " 18446744073709551615")
    }

    func testExactStatsListing() {
        let t = IPVSTable()
        adm("-A -t 1.2.3.4:80", t)
        let stats = StatsSource(service: { _ in StatsCounters(conns: 1, inPackets: 123_456_789_012, outPackets: 0, inBytes: 0, outBytes: 0) })
        let out = adm("-Ln --stats --exact", t, env: testEnv(stats: stats)).0
        XCTAssertTrue(out.contains("TCP  1.2.3.4:80                          1 123456789012        0        0        0\n"), out)
        let rounded = adm("-Ln --stats", t, env: testEnv(stats: stats)).0
        XCTAssertTrue(rounded.contains("TCP  1.2.3.4:80                          1     123G        0        0        0\n"), rounded)
    }

    func testServiceSortWrapsAddressDifference() {
        // ntohl(10.0.0.1) - ntohl(192.168.0.1) wraps to a positive int:
        // ipvsadm lists 192.168.0.1 first.
        let t = IPVSTable()
        adm("-A -t 10.0.0.1:80", t)
        adm("-A -t 192.168.0.1:80", t)
        adm("-A -t 10.0.0.2:80", t)
        adm("-A -u 10.0.0.1:53", t)
        let lines = adm("-Ln", t).0.split(separator: "\n").dropFirst(3).map(String.init)
        XCTAssertEqual(lines, ["TCP  192.168.0.1:80 wlc", "TCP  10.0.0.1:80 wlc", "TCP  10.0.0.2:80 wlc", "UDP  10.0.0.1:53 wlc"])
    }

    func testDestSortWrapsAndIsNotTransitive() {
        // a = 1.0.0.1, b = 100.0.0.1, c = 200.0.0.1: a < b, b < c, but c < a.
        // Added a, b, c the list order is c, b, a; glibc's merge sort gives c, a, b.
        let t = IPVSTable()
        adm("-A -t 5.5.5.5:80", t)
        for a in ["1.0.0.1", "100.0.0.1", "200.0.0.1"] { adm("-a -t 5.5.5.5:80 -r \(a) -m", t) }
        let dests = adm("-Ln", t).0.split(separator: "\n").dropFirst(4).map { String($0.prefix(20)).trimmingSpaces }
        XCTAssertEqual(dests, ["-> 200.0.0.1:80", "-> 1.0.0.1:80", "-> 100.0.0.1:80"])
        // --nosort: list order, newest first
        let raw = adm("-Ln --nosort", t).0.split(separator: "\n").dropFirst(4).map { String($0.prefix(20)).trimmingSpaces }
        XCTAssertEqual(raw, ["-> 200.0.0.1:80", "-> 100.0.0.1:80", "-> 1.0.0.1:80"])
    }

    func testNosortPrintsKernelHashOrder() {
        let t = IPVSTable()
        for l in ["-A -t 10.0.0.3:80", "-A -u 10.0.0.1:53", "-A -f 9", "-A -t 10.0.0.1:80", "-A -t 10.0.0.2:443"] { adm(l, t) }
        let names = adm("-Ln --nosort", t).0.split(separator: "\n").dropFirst(3).map(String.init)
        let expected = t.services.map { IpvsadmFormat.serviceEntry($0, format: [.numeric], names: .numericOnly) }
            .map { String($0.dropLast()) }
        XCTAssertEqual(names, expected)
        XCTAssertEqual(adm("-Ln --sort", t).0, adm("-Ln", t).0)
    }

    func testDestsSortByPortAfterAddress() {
        let t = IPVSTable()
        adm("-A -t 5.5.5.5:80", t)
        adm("-a -t 5.5.5.5:80 -r 10.0.0.1:8080 -m", t)
        adm("-a -t 5.5.5.5:80 -r 10.0.0.1:81 -m", t)
        adm("-a -t 5.5.5.5:80 -r 10.0.0.0:9000 -m", t)
        let dests = adm("-Ln", t).0.split(separator: "\n").dropFirst(4).map { String($0.prefix(20)).trimmingSpaces }
        XCTAssertEqual(dests, ["-> 10.0.0.0:9000", "-> 10.0.0.1:81", "-> 10.0.0.1:8080"])
    }

    func testCompareFunctions() {
        XCTAssertEqual(addressDifference(v4("10.0.0.1"), v4("192.168.0.1"), family: .inet), 0x4958_0000)
        let a = IPAddress("::1")!, b = IPAddress("::2")!
        XCTAssertEqual(addressDifference(a, b, family: .inet6), -1)
        XCTAssertEqual(glibcMergeSort([3, 1, 2, 5, 4], { Int32($0 - $1) }), [1, 2, 3, 4, 5])
        // stable: equal keys keep their order
        let pairs = [(1, "a"), (0, "b"), (1, "c"), (0, "d")]
        XCTAssertEqual(glibcMergeSort(pairs, { Int32($0.0 - $1.0) }).map { $0.1 }, ["b", "d", "a", "c"])
    }

    func testThresholdsListing() throws {
        let t = IPVSTable()
        adm("-A -t 1.2.3.4:80", t)
        adm("-a -t 1.2.3.4:80 -r 10.0.0.1 -x 100 -y 50", t)
        setConns(try XCTUnwrap(t.dest(in: .address(proto: .tcp, addr: v4("1.2.3.4"), port: 80), addr: v4("10.0.0.1"), port: 80)),
                 active: 3, inactive: 4, persistent: 7)
        XCTAssertEqual(adm("-Ln --thresholds", t).0,
            "IP Virtual Server version 1.2.1 (size=4096)\n" +
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  -> RemoteAddress:Port\n" +
            "TCP  1.2.3.4:80 wlc\n" +
            "  -> 10.0.0.1:80                  100        50         3          4         \n")
        XCTAssertEqual(adm("-Ln --persistent-conn", t).0,
            "IP Virtual Server version 1.2.1 (size=4096)\n" +
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  -> RemoteAddress:Port\n" +
            "TCP  1.2.3.4:80 wlc\n" +
            "  -> 10.0.0.1:80                  1         7           3          4         \n")
    }

    func testTunInfoListing() {
        let t = IPVSTable()
        adm("-A -t 1.2.3.4:80", t)
        adm("-a -t 1.2.3.4:80 -r 10.0.0.1 -i --tun-type gue --tun-port 6080 --tun-remcsum", t)
        adm("-a -t 1.2.3.4:80 -r 10.0.0.2 -m -w 3", t)
        adm("-a -t 1.2.3.4:80 -r 10.0.0.3 -i --tun-type gre --tun-csum", t)
        adm("-a -t 1.2.3.4:80 -r 10.0.0.4 -i", t)
        XCTAssertEqual(adm("-Ln --tun-info", t).0,
            "IP Virtual Server version 1.2.1 (size=4096)\n" +
            "Prot LocalAddress:Port Scheduler Flags\n" +
            "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n" +
            "TCP  1.2.3.4:80 wlc\n" +
            "  -> 10.0.0.1:80                  Tunnel  gue:6080:r+c  1      0          0         \n" +
            "  -> 10.0.0.2:80                  Masq    n/a           3      0          0         \n" +
            "  -> 10.0.0.3:80                  Tunnel  gre:+c        1      0          0         \n" +
            "  -> 10.0.0.4:80                  Tunnel  ipip          1      0          0         \n")
        XCTAssertEqual(adm("-S -n", t).0,
            "-A -t 1.2.3.4:80 -s wlc\n" +
            "-a -t 1.2.3.4:80 -r 10.0.0.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-remcsum\n" +
            "-a -t 1.2.3.4:80 -r 10.0.0.2:80 -m -w 3\n" +
            "-a -t 1.2.3.4:80 -r 10.0.0.3:80 -i -w 1 --tun-type gre --tun-csum\n" +
            "-a -t 1.2.3.4:80 -r 10.0.0.4:80 -i -w 1 --tun-type ipip\n")
    }

    func testServiceLineVariants() {
        let t = IPVSTable()
        adm("-A -u 10.1.1.1:53 -s sh -b sh-fallback,sh-port -p 30 -M 255.255.0.0 --pe sip -o", t)
        adm("-A -t 10.1.1.2:80 -s wrr -b flag-3", t)
        adm("-A -f 9 -6 -s mh -b mh-port -p -M 64", t)
        adm("-A -t [2001:db8::10]:443 -s rr", t)
        let ln = adm("-Ln", t).0
        XCTAssertEqual(ln,
            "IP Virtual Server version 1.2.1 (size=4096)\n" +
            "Prot LocalAddress:Port Scheduler Flags\n" +
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
            "TCP  10.1.1.2:80 wrr (flag-3)\n" +
            "UDP  10.1.1.1:53 sh (sh-fallback,sh-port) persistent 30 mask 255.255.0.0 pe sip ops\n" +
            "TCP  [2001:db8::10]:443 rr\n" +
            "FWM  9 IPv6 mh (mh-port) persistent 360 mask 64\n")
        XCTAssertEqual(adm("-Sn", t).0,
            "-A -t 10.1.1.2:80 -s wrr -b flag-3\n" +
            "-A -u 10.1.1.1:53 -s sh -p 30 -M 255.255.0.0 --pe sip -o -b sh-fallback,sh-port\n" +
            "-A -t [2001:db8::10]:443 -s rr\n" +
            "-A -f 9 -6 -s mh -p 360 -M 64 -b mh-port\n")
    }

    func testTruncationOfLongIPv4Names() throws {
        // svc_name is cut to 33 characters, dest names to 28 (IPv4 only).
        let t = IPVSTable()
        let svc = try XCTUnwrap(parseOK(words("-A -t 1.2.3.4:80")))
        _ = svc
        adm("-A -t 111.222.111.222:65535", t)
        adm("-a -t 111.222.111.222:65535 -r 222.111.222.111:65534 -m", t)
        let out = adm("-L", t, env: AdmEnvironment(program: "ipvsadm", names: .numericOnly)).0
        XCTAssertTrue(out.contains("\nTCP  111.222.111.222:65535 wlc\n"))
        XCTAssertTrue(out.contains("  -> 222.111.222.111:65534        Masq    1 "))
        // the names table gives port names without -n
        let t2 = IPVSTable()
        adm("-A -t 10.0.0.1:80", t2)
        adm("-a -t 10.0.0.1:80 -r 10.0.0.2:443 -m", t2)
        let named = adm("-L", t2).0
        XCTAssertTrue(named.contains("TCP  10.0.0.1:http wlc\n"), named)
        XCTAssertTrue(named.contains("  -> 10.0.0.2:https               Masq "), named)
        XCTAssertEqual(adm("-S", t2).0, "-A -t 10.0.0.1:http -s wlc\n-a -t 10.0.0.1:http -r 10.0.0.2:https -m -w 1\n")
    }

    func testIPv6Text() {
        XCTAssertEqual(inetNtop(IPAddress("2001:db8::1")!), "2001:db8::1")
        XCTAssertEqual(inetNtop(IPAddress("::")!), "::")
        XCTAssertEqual(inetNtop(IPAddress("::1")!), "::1")
        XCTAssertEqual(inetNtop(IPAddress("1::")!), "1::")
        XCTAssertEqual(inetNtop(IPAddress("1:0:0:2:0:0:0:3")!), "1:0:0:2::3")
        XCTAssertEqual(inetNtop(IPAddress("1:0:0:2:0:0:3:4")!), "1::2:0:0:3:4")
        XCTAssertEqual(inetNtop(IPAddress("1:2:3:4:5:6:0:8")!), "1:2:3:4:5:6:0:8")
        XCTAssertEqual(inetNtop(IPAddress("::ffff:10.0.0.1")!), "::ffff:10.0.0.1")
        XCTAssertEqual(inetNtop(IPAddress("::10.0.0.1")!), "::10.0.0.1")
        XCTAssertEqual(inetNtop(IPAddress("FE80::ABCD")!), "fe80::abcd")
    }

    func testConnectionListingVariants() {
        let rows = [
            ConnectionRow(proto: .udp, expiresSeconds: 300, stateName: "UDP",
                          client: (IPAddress("2001:db8::9")!, 5060), virtual: (IPAddress("2001:db8::1")!, 5060),
                          dest: (IPAddress("2001:db8::2")!, 5060), peName: "sip", peData: "abc"),
            ConnectionRow(proto: .ip, expiresSeconds: 6001, stateName: "NONE",
                          client: (v4("172.16.0.9"), 0), virtual: (v4("0.0.0.5"), 0), dest: (v4("10.0.0.31"), 0)),
        ]
        let env = testEnv(connections: rows)
        XCTAssertEqual(adm("-L -n -c", IPVSTable(), env: env).0,
            "IPVS connection entries\n" +
            "pro expire state       source             virtual            destination\n" +
            "UDP 05:00  UDP         [2001:db8::9]:5060 [2001:db8::1]:5060 [2001:db8::2]:5060\n" +
            "IP  100:01 NONE        172.16.0.9:0       0.0.0.5:0          10.0.0.31:0\n")
        XCTAssertEqual(adm("-L -n -c --persistent-conn", IPVSTable(), env: env).0,
            "IPVS connection entries\n" +
            "pro expire state       source             virtual            destination        pe name          pe_data\n" +
            "UDP 05:00  UDP         [2001:db8::9]:5060 [2001:db8::1]:5060 [2001:db8::2]:5060 sip                abc\n" +
            "IP  100:01 NONE        172.16.0.9:0       0.0.0.5:0          10.0.0.31:0\n")
        // without -n the ports are named
        let named = adm("-Lc", IPVSTable(), env: testEnv(connections: [
            ConnectionRow(proto: .tcp, expiresSeconds: 59, stateName: "SYN_RECV", client: (v4("1.1.1.1"), 1000),
                          virtual: (v4("2.2.2.2"), 80), dest: (v4("3.3.3.3"), 80))])).0
        XCTAssertTrue(named.hasSuffix("TCP 00:59  SYN_RECV    1.1.1.1:1000       2.2.2.2:http       3.3.3.3:http\n"), named)
    }

    func testTimeoutListing() {
        let t = IPVSTable()
        XCTAssertEqual(adm("-L --timeout", t).0, "Timeout (tcp tcpfin udp): 900 120 300\n")
        XCTAssertEqual(adm("--set 1000 0 30", t).2, 0)
        XCTAssertEqual(adm("-L --timeout", t).0, "Timeout (tcp tcpfin udp): 1000 120 30\n")
    }

    func testHeaderSizeParameter() {
        var env = testEnv()
        env.tableSize = 65536
        XCTAssertEqual(adm("-Ln", IPVSTable(), env: env).0,
            "IP Virtual Server version 1.2.1 (size=65536)\n" +
            "Prot LocalAddress:Port Scheduler Flags\n" +
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
        XCTAssertEqual(IpvsadmFormat.header(size: 4096), "IP Virtual Server version 1.2.1 (size=4096)\n")
    }

    func testNoArgumentsListsWithNames() {
        let t = IPVSTable()
        adm("-A -t 10.0.0.1:22", t)
        var out = "", err = ""
        XCTAssertEqual(runIpvsadm([], on: t, environment: testEnv(), output: &out, errors: &err), 0)
        XCTAssertTrue(out.hasSuffix("TCP  10.0.0.1:ssh wlc\n"), out)
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
