import XCTest
@testable import Control
import IPVS

final class ParserTests: XCTestCase {
    let vip = v4("192.168.10.100")

    func testNoArgumentsListsTheTable() {
        XCTAssertEqual(parseOK([])?.kind, .list)
    }

    func testEveryCommand() {
        let cases: [(String, IpvsadmCommandKind)] = [
            ("-A -t 1.2.3.4:80", .addService), ("--add-service -t 1.2.3.4:80", .addService),
            ("-E -t 1.2.3.4:80", .editService), ("--edit-service -t 1.2.3.4:80", .editService),
            ("-D -t 1.2.3.4:80", .deleteService), ("--delete-service -t 1.2.3.4:80", .deleteService),
            ("-C", .flush), ("--clear", .flush),
            ("-R", .restore), ("--restore", .restore),
            ("-S", .save), ("--save", .save), ("-S -n", .save),
            ("-a -t 1.2.3.4:80 -r 5.6.7.8", .addServer), ("--add-server -t 1.2.3.4:80 -r 5.6.7.8", .addServer),
            ("-e -t 1.2.3.4:80 -r 5.6.7.8", .editServer), ("--edit-server -t 1.2.3.4:80 -r 5.6.7.8", .editServer),
            ("-d -t 1.2.3.4:80 -r 5.6.7.8", .deleteServer), ("--delete-server -t 1.2.3.4:80 -r 5.6.7.8", .deleteServer),
            ("-L", .list), ("-l", .list), ("--list", .list),
            ("-Z", .zero), ("--zero", .zero), ("-Z -t 1.2.3.4:80", .zero),
            ("--set 900 120 300", .setTimeout),
            ("--start-daemon master", .startDaemon), ("--start-daemon=backup", .startDaemon),
            ("--stop-daemon master", .stopDaemon),
            ("-h", .help), ("--help", .help), ("-v", .version), ("--version", .version),
        ]
        for (line, kind) in cases {
            XCTAssertEqual(parseOK(words(line))?.kind, kind, line)
        }
    }

    func testAddServiceDefaults() throws {
        let c = try XCTUnwrap(parseOK(words("-A -t 192.168.10.100:80")))
        var expected = ServiceSpec(key: .address(proto: .tcp, addr: vip, port: 80))
        expected.scheduler = "wlc"
        expected.netmask = 0xFFFF_FFFF
        XCTAssertEqual(c.service, expected)
        XCTAssertNil(c.dest)
        XCTAssertEqual(c.options, [.service])
    }

    func testServiceOptions() throws {
        let c = try XCTUnwrap(parseOK(words("-A -u 192.168.10.100:53 -s rr -p 600 -M 255.255.255.0 --pe sip -o")))
        let s = try XCTUnwrap(c.service)
        XCTAssertEqual(s.key, .address(proto: .udp, addr: vip, port: 53))
        XCTAssertEqual(s.scheduler, "rr")
        XCTAssertEqual(s.flags, [.persistent, .onePacket])
        XCTAssertEqual(s.timeout, 600)
        XCTAssertEqual(s.netmask, 0xFFFF_FF00)
        XCTAssertEqual(s.persistenceEngine, "sip")
        XCTAssertEqual(c.options, [.service, .scheduler, .persistent, .netmask, .persistenceEngine, .onePacket])
    }

    func testPersistentOptionalArgument() throws {
        // bare -p: 360
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -p"))?.service?.timeout, 360)
        // followed by an option: still bare
        let c = try XCTUnwrap(parseOK(words("-A -t 1.2.3.4:80 -p -s rr")))
        XCTAssertEqual(c.service?.timeout, 360)
        XCTAssertEqual(c.service?.scheduler, "rr")
        // with a value, next word, attached, or long form
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -p 100"))?.service?.timeout, 100)
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -p100"))?.service?.timeout, 100)
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 --persistent=100"))?.service?.timeout, 100)
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 --persistent 100"))?.service?.timeout, 100)
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 --persistent"))?.service?.timeout, 360)
        // range 1..2678400
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -p 1"))?.service?.timeout, 1)
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -p 2678400"))?.service?.timeout, 2678400)
        assertRefused("-A -t 1.2.3.4:80 -p 0", "invalid timeout value `0' specified")
        assertRefused("-A -t 1.2.3.4:80 -p 2678401", "invalid timeout value `2678401' specified")
        assertRefused("-A -t 1.2.3.4:80 -p abc", "invalid timeout value `abc' specified")
        // a persistent service may have port 0
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4 -p"))?.service?.key, .address(proto: .tcp, addr: v4("1.2.3.4"), port: 0))
    }

    func testShortOptionClustering() throws {
        let c = try XCTUnwrap(parseOK(["-Ln"]))
        XCTAssertEqual(c.kind, .list)
        XCTAssertEqual(c.options, [.numeric])
        let c2 = try XCTUnwrap(parseOK(["-Lnc"]))
        XCTAssertEqual(c2.options, [.numeric, .connection])
        // argument in the same word, or the next word after a cluster
        let c3 = try XCTUnwrap(parseOK(["-At", "1.2.3.4:80", "-srr"]))
        XCTAssertEqual(c3.service?.scheduler, "rr")
        let c4 = try XCTUnwrap(parseOK(["-at1.2.3.4:80", "-r5.6.7.8:80", "-mw3"]))
        XCTAssertEqual(c4.dest?.forward, .masq)
        XCTAssertEqual(c4.dest?.weight, 3)
        XCTAssertEqual(parseOK(["-a", "-t", "1.2.3.4:80", "-r", "5.6.7.8", "-w=7"])?.dest?.weight, 7)
        // -Sn, -Zt
        XCTAssertEqual(parseOK(["-Sn"])?.listFormat, [.rule, .numeric])
        XCTAssertEqual(parseOK(["-Zt", "1.2.3.4:80"])?.service?.key, .address(proto: .tcp, addr: v4("1.2.3.4"), port: 80))
    }

    func testLongOptionsWithEqualsAndSeparateValue() throws {
        let a = try XCTUnwrap(parseOK(["--add-server", "--tcp-service=1.2.3.4:80", "--real-server", "5.6.7.8:8080",
                                       "--masquerading", "--weight=9", "--u-threshold", "100", "--l-threshold=50"]))
        XCTAssertEqual(a.dest?.addr, v4("5.6.7.8"))
        XCTAssertEqual(a.dest?.port, 8080)
        XCTAssertEqual(a.dest?.weight, 9)
        XCTAssertEqual(a.dest?.upperThreshold, 100)
        XCTAssertEqual(a.dest?.lowerThreshold, 50)
        let b = try XCTUnwrap(parseOK(["-A", "--udp-service", "1.2.3.4:53", "--scheduler=sh", "--sched-flags", "sh-fallback,sh-port"]))
        XCTAssertEqual(b.service?.flags, [.sched1, .sched2])
        let c = try XCTUnwrap(parseOK(["-A", "--fwmark-service=7", "--ipv6", "--ops"]))
        XCTAssertEqual(c.service?.key, .fwmark(mark: 7, family: .inet6))
        XCTAssertEqual(c.service?.netmask, 128)
        XCTAssertEqual(c.service?.flags, [.onePacket])
    }

    func testDestDefaults() throws {
        let c = try XCTUnwrap(parseOK(words("-a -t 192.168.10.100:80 -r 10.0.0.1:8080")))
        // -g is the default, and DR forces dport = vport
        var d = DestSpec(addr: v4("10.0.0.1"), port: 80)
        d.forward = .droute
        d.weight = 1
        XCTAssertEqual(c.dest, d)
        // NAT keeps the given port; without a port the vport is taken
        XCTAssertEqual(parseOK(words("-a -t 192.168.10.100:80 -r 10.0.0.1:8080 -m"))?.dest?.port, 8080)
        XCTAssertEqual(parseOK(words("-a -t 192.168.10.100:80 -r 10.0.0.1 -m"))?.dest?.port, 80)
        // TUN forces the vport too
        XCTAssertEqual(parseOK(words("-a -t 192.168.10.100:80 -r 10.0.0.1:8080 -i"))?.dest?.port, 80)
        // fwmark: no forcing, port as given (0 if none)
        XCTAssertEqual(parseOK(words("-a -f 5 -r 10.0.0.1:8080 -g"))?.dest?.port, 8080)
        XCTAssertEqual(parseOK(words("-a -f 5 -r 10.0.0.1"))?.dest?.port, 0)
        // delete does not force
        XCTAssertEqual(parseOK(words("-d -t 192.168.10.100:80 -r 10.0.0.1:8080"))?.dest?.port, 8080)
    }

    func testWeightRange() {
        XCTAssertEqual(parseOK(words("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 0"))?.dest?.weight, 0)
        XCTAssertEqual(parseOK(words("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 65535"))?.dest?.weight, 65535)
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 65536", "illegal weight specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -w -1", "illegal weight specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -w x", "illegal weight specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 5x", "illegal weight specified")
    }

    func testThresholds() {
        let c = parseOK(words("-a -t 1.2.3.4:80 -r 5.6.7.8 -x 2147483647 -y 0"))
        XCTAssertEqual(c?.dest?.upperThreshold, 2147483647)
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -x 2147483648", "illegal u_threshold specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -y -3", "illegal l_threshold specified")
    }

    func testTunnelOptions() throws {
        let g = try XCTUnwrap(parseOK(words("-a -f 1 -r 10.0.0.1 -i --tun-type gue --tun-port 6080 --tun-remcsum")))
        XCTAssertEqual(g.dest?.tunnelType, .gue)
        XCTAssertEqual(g.dest?.tunnelPort, 6080)
        XCTAssertEqual(g.dest?.tunnelFlags, [.remcsum])
        let r = try XCTUnwrap(parseOK(words("-a -f 1 -r 10.0.0.1 -i --tun-type gre --tun-csum")))
        XCTAssertEqual(r.dest?.tunnelType, .gre)
        XCTAssertEqual(r.dest?.tunnelFlags, [.csum])
        let n = try XCTUnwrap(parseOK(words("-e -f 1 -r 10.0.0.1 -i --tun-type gre --tun-nocsum")))
        XCTAssertEqual(n.dest?.tunnelFlags, [])
        XCTAssertEqual(parseOK(words("-a -f 1 -r 10.0.0.1 -i --tun-type ipip"))?.dest?.tunnelType, .ipip)
        XCTAssertEqual(parseOK(words("-a -f 1 -r 10.0.0.1 -i"))?.dest?.tunnelType, .ipip)
        assertRefused("-a -f 1 -r 10.0.0.1 -i --tun-type vxlan", "illegal tunnel type specified")
        assertRefused("-a -f 1 -r 10.0.0.1 -i --tun-type gue --tun-port 0", "illegal tunnel port specified")
        assertRefused("-a -f 1 -r 10.0.0.1 -i --tun-type gue",
                      "You need to supply the 'tun-port' option for the 'gue' tunnel type")
        assertRefused("-a -f 1 -r 10.0.0.1 -i --tun-port 5",
                      "Illegal 'tun-port' option with the 'ipip' tunnel type")
        assertRefused("-a -f 1 -r 10.0.0.1 -i --tun-type gre --tun-remcsum",
                      "Illegal 'tun-remcsum' option with the 'gre' tunnel type")
        assertRefused("-a -f 1 -r 10.0.0.1 -i --tun-type gue --tun-port 5 --tun-csum --tun-nocsum",
                      "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type")
        assertRefused("-a -f 1 -r 10.0.0.1 -m --tun-type gre", "Tunnel options conflict with forward method")
        assertRefused("-a -f 1 -r 10.0.0.1 --tun-csum", "Tunnel options conflict with forward method")
    }

    func testHostForms() throws {
        // IPv6 in brackets with a port
        let c = try XCTUnwrap(parseOK(["-A", "-t", "[2001:db8::1]:443"]))
        XCTAssertEqual(c.service?.key, .address(proto: .tcp, addr: IPAddress("2001:db8::1")!, port: 443))
        XCTAssertEqual(c.service?.netmask, 128)
        // IPv6 without brackets has no port
        XCTAssertEqual(parseOK(["-D", "-t", "2001:db8::1"])?.service?.key,
                       .address(proto: .tcp, addr: IPAddress("2001:db8::1")!, port: 0))
        // service names from the services file, by protocol
        XCTAssertEqual(parseOK(["-D", "-t", "1.2.3.4:http"])?.service?.key,
                       .address(proto: .tcp, addr: v4("1.2.3.4"), port: 80))
        XCTAssertEqual(parseOK(["-D", "-t", "1.2.3.4:www"])?.service?.key,
                       .address(proto: .tcp, addr: v4("1.2.3.4"), port: 80))
        XCTAssertEqual(parseOK(["-D", "-u", "1.2.3.4:domain"])?.service?.key,
                       .address(proto: .udp, addr: v4("1.2.3.4"), port: 53))
        assertRefused("-D -u 1.2.3.4:http", "illegal virtual server address[:port] specified")
        // host names from the hosts file
        XCTAssertEqual(parseOK(["-a", "-t", "1.2.3.4:80", "-r", "backend1:80"])?.dest?.addr, v4("10.9.8.7"))
        assertRefused("-D -t nosuchhost.invalid:80", "illegal virtual server address[:port] specified")
        // digits-only hosts are refused
        assertRefused("-D -t 1234", "illegal virtual server address[:port] specified")
        assertRefused("-D -t 1234:80", "illegal virtual server address[:port] specified")
        assertRefused("-a -t 1.2.3.4:80 -r 99", "illegal real server address[:port] specified")
        // bad ports
        assertRefused("-D -t 1.2.3.4:65536", "illegal virtual server address[:port] specified")
        assertRefused("-D -t 1.2.3.4:", "illegal virtual server address[:port] specified")
        assertRefused("-D -t [::1]", "illegal virtual server address[:port] specified")
        assertRefused("-D -t 1.2.3.256:80", "illegal virtual server address[:port] specified")
        // inet_aton shorthand is accepted like ipvsadm does
        XCTAssertEqual(parseOK(["-D", "-t", "10.1:80"])?.service?.key,
                       .address(proto: .tcp, addr: v4("10.0.0.1"), port: 80))
    }

    func testIPv6TunnelDestForIPv4Service() throws {
        let c = try XCTUnwrap(parseOK(["-a", "-t", "1.2.3.4:80", "-r", "[2001:db8::5]:80", "-i"]))
        XCTAssertEqual(c.dest?.addr, IPAddress("2001:db8::5")!)
        assertRefused("-a -t 1.2.3.4:80 -r [2001:db8::5]:80 -m",
                      "Different address family is allowed only for tunneling servers")
        assertRefused("-a -t 1.2.3.4:80 -r [2001:db8::5]:80",
                      "Different address family is allowed only for tunneling servers")
    }

    func testFwmark() throws {
        XCTAssertEqual(parseOK(words("-A -f 4294967295"))?.service?.key, .fwmark(mark: 4294967295, family: .inet))
        assertRefused("-A -f 0", "invalid fwmark value `0' specified")
        assertRefused("-A -f 4294967296", "invalid fwmark value `4294967296' specified")
        assertRefused("-A -f -1", "invalid fwmark value `-1' specified")
        assertRefused("-A -f x", "invalid fwmark value `x' specified")
        assertRefused("-A -6 -f 1", "-6 used before -f\n")
        assertRefused("-A -t 1.2.3.4:80 -6", "-6 used before -f\n")
    }

    func testNetmask() throws {
        assertRefused("-A -t 1.2.3.4:80 -p -M 255.255.255.x", "illegal virtual server persistent mask specified")
        XCTAssertEqual(parseOK(words("-A -f 1 -6 -p -M 64"))?.service?.netmask, 64)
        assertRefused("-A -f 1 -6 -p -M 129", "illegal ipv6 netmask specified")
        assertRefused("-A -t [::1]:80 -p -M 0", "illegal ipv6 netmask specified")
    }

    func testSchedulerFlags() {
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -s mh -b mh-fallback,mh-port"))?.service?.flags, [.sched1, .sched2])
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -b flag-1,flag-2,flag-3"))?.service?.flags, [.sched1, .sched2, .sched3])
        // the scheduler may come after -b
        XCTAssertEqual(parseOK(words("-A -t 1.2.3.4:80 -b sh-port -s sh"))?.service?.flags, [.sched2])
        assertRefused("-A -t 1.2.3.4:80 -b sh-port", "incompatible scheduler flag `sh-port'")
        assertRefused("-A -t 1.2.3.4:80 -s sh -b mh-port", "incompatible scheduler flag `mh-port'")
        assertRefused("-A -t 1.2.3.4:80 -s mh -b sh-fallback", "incompatible scheduler flag `sh-fallback'")
        assertRefused("-A -t 1.2.3.4:80 -s sh -b sh-port,bogus", "invalid scheduler flag `bogus'")
    }

    func testSetTimeouts() {
        XCTAssertEqual(parseOK(words("--set 900 120 300"))?.timeouts, TimeoutSettings(tcp: 900, tcpFin: 120, udp: 300))
        XCTAssertEqual(parseOK(words("--set 0 0 0"))?.timeouts, TimeoutSettings(tcp: 0, tcpFin: 0, udp: 0))
        // popt keeps non-option words wherever they are
        XCTAssertEqual(parseOK(words("10 --set 20 30"))?.timeouts, TimeoutSettings(tcp: 10, tcpFin: 20, udp: 30))
        assertRefused("--set 900 120", "--set option requires 3 timeout values")
        assertRefused("--set", "--set option requires 3 timeout values")
        assertRefused("--set 900 120 x", "invalid timeout value `x' specified")
        assertRefused("--set 900 120 2678401", "invalid timeout value `2678401' specified")
        assertRefused("--set 1 2 3 4", "unexpected argument 4")
    }

    func testDaemonOptions() throws {
        let c = try XCTUnwrap(parseOK(words("--start-daemon backup --mcast-interface eth1 --syncid 7 --sync-maxlen 1400 --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 4")))
        var d = SyncDaemonConfig(state: .backup)
        d.mcastInterface = "eth1"; d.syncID = 7; d.syncMaxlen = 1400
        d.mcastGroup = v4("239.1.2.3"); d.mcastPort = 9000; d.mcastTTL = 4
        XCTAssertEqual(c.daemon, d)
        XCTAssertEqual(parseOK(words("--start-daemon master"))?.daemon, SyncDaemonConfig(state: .master))
        XCTAssertEqual(parseOK(words("--start-daemon master --mcast-group ff02::81"))?.daemon?.mcastGroup, IPAddress("ff02::81"))
        XCTAssertEqual(parseOK(words("--stop-daemon backup --syncid 3"))?.daemon?.state, .backup)
        assertRefused("--start-daemon slave", "illegal start-daemon parameter specified")
        assertRefused("--stop-daemon slave", "illegal start_daemon specified")
        assertRefused("--start-daemon master --syncid 256", "illegal syncid specified")
        assertRefused("--start-daemon master --mcast-port 0", "illegal mcast-port specified")
        assertRefused("--start-daemon master --mcast-ttl 256", "illegal mcast-ttl specified")
        assertRefused("--start-daemon master --sync-maxlen 65508", "illegal sync-maxlen specified")
        assertRefused("--start-daemon master --mcast-group 10.0.0.1", "invalid IPv4 mcast-group `10.0.0.1'")
        assertRefused("--start-daemon master --mcast-group 2001::1", "invalid IPv6 mcast-group `2001::1'")
        assertRefused("--stop-daemon master --mcast-interface eth0", "Illegal 'mcast-interface' option with the 'stop-daemon' command")
    }

    func testListOptions() throws {
        let c = try XCTUnwrap(parseOK(words("-L -n --stats --exact --nosort --sort")))
        XCTAssertEqual(c.listFormat, [.numeric, .stats, .exact, .nosort])
        XCTAssertEqual(parseOK(words("-L --rate"))?.listFormat, [.rate])
        XCTAssertEqual(parseOK(words("-L --thresholds"))?.listFormat, [.thresholds])
        XCTAssertEqual(parseOK(words("-L --persistent-conn"))?.listFormat, [.persistentConn])
        XCTAssertEqual(parseOK(words("-L --tun-info"))?.listFormat, [.tunInfo])
        XCTAssertEqual(parseOK(words("-L -X"))?.listFormat, [.exact])
        XCTAssertEqual(parseOK(words("-L --timeout"))?.options, [.timeout])
        XCTAssertEqual(parseOK(words("-L --daemon"))?.options, [.daemon])
        XCTAssertEqual(parseOK(words("-L -c --persistent-conn"))?.options, [.connection, .persistentConn])
        XCTAssertEqual(parseOK(words("-L -t 1.2.3.4:80 --stats"))?.options, [.service, .stats])
        XCTAssertEqual(parseOK(words("-L --json"))?.json, true)
        XCTAssertEqual(parseOK(words("-L -c --json"))?.json, true)
    }

    func testEditCarriesDefaultsForOmittedOptions() throws {
        // -E without -s/-p resets them: the spec holds the defaults.
        let e = try XCTUnwrap(parseOK(words("-E -t 1.2.3.4:80")))
        XCTAssertEqual(e.service?.scheduler, "wlc")
        XCTAssertEqual(e.service?.flags, [])
        XCTAssertEqual(e.service?.timeout, 0)
        XCTAssertEqual(e.service?.netmask, 0xFFFF_FFFF)
        XCTAssertNil(e.service?.persistenceEngine)
        // -e without -w/-m resets weight to 1 and the method to -g
        let d = try XCTUnwrap(parseOK(words("-e -t 1.2.3.4:80 -r 5.6.7.8")))
        XCTAssertEqual(d.dest?.weight, 1)
        XCTAssertEqual(d.dest?.forward, .droute)
        XCTAssertEqual(d.dest?.upperThreshold, 0)
        XCTAssertEqual(d.dest?.tunnelType, .ipip)
    }

    func testSCTPService() {
        XCTAssertEqual(parseOK(words("-A --sctp-service 1.2.3.4:5000"))?.service?.key,
                       .address(proto: .sctp, addr: v4("1.2.3.4"), port: 5000))
    }

    func testSchedulerNameTruncatedAndEmptyMeansDefault() {
        XCTAssertEqual(parseOK(["-A", "-t", "1.2.3.4:80", "-s", ""])?.service?.scheduler, "wlc")
        XCTAssertEqual(parseOK(["-A", "-t", "1.2.3.4:80", "-s", "abcdefghijklmnopq"])?.service?.scheduler, "abcdefghijklmno")
    }

    func testDoubleDashEndsOptions() {
        assertRefused("-L -- -n", "unexpected argument -n")
    }
}
