import XCTest
@testable import Control
import IPVS

/// A table whose every operation fails with one errno (for libipvs messages
/// the real table cannot produce, such as EPERM or ENOMEM).
final class FailingTable: IPVSAdministrable {
    let error: IPVSError
    init(_ e: IPVSError) { error = e }
    func addService(_ spec: ServiceSpec) throws(IPVSError) -> Service { throw error }
    func editService(_ spec: ServiceSpec) throws(IPVSError) { throw error }
    func deleteService(_ key: ServiceKey) throws(IPVSError) { throw error }
    func flush() throws(IPVSError) { throw error }
    func addDest(to key: ServiceKey, _ spec: DestSpec) throws(IPVSError) -> Dest { throw error }
    func editDest(in key: ServiceKey, _ spec: DestSpec) throws(IPVSError) { throw error }
    func deleteDest(from key: ServiceKey, addr: IPAddress, port: UInt16) throws(IPVSError) { throw error }
    func zero(_ key: ServiceKey?) throws(IPVSError) { throw error }
    var timeouts: TimeoutSettings { TimeoutSettings() }
    func setTimeouts(tcp: Int, tcpfin: Int, udp: Int) throws(IPVSError) { throw error }
    func service(for key: ServiceKey) -> Service? { nil }
    var services: [Service] { [] }
}

final class ExecuteTests: XCTestCase {
    let tcpKey = ServiceKey.address(proto: .tcp, addr: v4("192.168.10.100"), port: 80)

    func assertKernelError(_ line: String, _ table: IPVSAdministrable, _ message: String,
                           file: StaticString = #filePath, line l: UInt = #line) {
        let (out, err, rc) = adm(line, table)
        XCTAssertEqual(out, "", file: file, line: l)
        XCTAssertEqual(err, message + "\n", "for \(line)", file: file, line: l)
        XCTAssertEqual(rc, 255, "for \(line)", file: file, line: l)
    }

    func testKernelErrorsPerCommand() {
        let t = specExampleTable()
        assertKernelError("-A -t 192.168.10.100:80", t, "Service already exists")
        assertKernelError("-A -t 192.168.10.100:81 -s bogus", t, "Scheduler or persistence engine not found")
        assertKernelError("-A -t 192.168.10.100:81 -p --pe nope", t, "Scheduler or persistence engine not found")
        assertKernelError("-E -t 192.168.10.100:80 -s bogus", t, "Scheduler or persistence engine not found")
        assertKernelError("-E -t 192.168.10.100:81", t, "No such service")
        assertKernelError("-D -t 192.168.10.100:81", t, "No such service")
        assertKernelError("-Z -t 192.168.10.100:81", t, "No such service")
        assertKernelError("-a -t 192.168.10.100:81 -r 10.0.0.1", t, "Service not defined")
        assertKernelError("-e -t 192.168.10.100:81 -r 10.0.0.1", t, "Service not defined")
        assertKernelError("-d -t 192.168.10.100:81 -r 10.0.0.1", t, "Service not defined")
        assertKernelError("-a -t 192.168.10.100:80 -r 10.0.0.11 -m", t, "Destination already exists")
        assertKernelError("-e -t 192.168.10.100:80 -r 10.0.0.99 -m", t, "No such destination")
        assertKernelError("-d -t 192.168.10.100:80 -r 10.0.0.99", t, "No such destination")
        assertKernelError("-a -t 192.168.10.100:80 -r 10.0.0.50 -m -x 10 -y 20", t, "Numerical result out of range")
        // nothing changed
        XCTAssertEqual(t.service(for: tcpKey)?.dests.count, 2)
    }

    func testGenericLibipvsMessages() {
        let cases: [(IPVSError, String)] = [
            (.permission, "Permission denied (you must be root)"),
            (.invalid, "Invalid operation.  Possibly wrong module version, address not unicast, ..."),
            (.noMemory, "Memory allocation problem"),
            (.notSupported, "Operation not supported with IPv6"),
            (.familyNotSupported, "Operation not supported with specified address family"),
            (.fault, "Bad address"),
        ]
        for (e, msg) in cases {
            for line in ["-A -t 1.2.3.4:80", "-D -t 1.2.3.4:80", "-a -t 1.2.3.4:80 -r 5.6.7.8", "-C", "-Z", "--set 1 2 3"] {
                assertKernelError(line, FailingTable(e), msg)
            }
        }
        XCTAssertEqual(ipvsErrorMessage(.exists, command: .startDaemon), "Daemon has already run")
        XCTAssertEqual(ipvsErrorMessage(.noSuchService, command: .stopDaemon), "No daemon is running")
        XCTAssertEqual(ipvsErrorMessage(.noSuchDest, command: .deleteServer), "No such destination")
        XCTAssertEqual(ipvsErrorMessage(.notFound, command: .addService), "Scheduler or persistence engine not found")
    }

    func testEditServiceResetsOmittedOptions() throws {
        let t = IPVSTable()
        XCTAssertEqual(adm("-A -u 10.0.0.1:53 -s rr -p 100 -M 255.255.255.0 -o", t).2, 0)
        let key = ServiceKey.address(proto: .udp, addr: v4("10.0.0.1"), port: 53)
        let s = try XCTUnwrap(t.service(for: key))
        XCTAssertEqual(s.schedulerName, "rr")
        XCTAssertTrue(s.isPersistent)
        // -E with only -s sh: persistence, mask and ops go back to defaults
        XCTAssertEqual(adm("-E -u 10.0.0.1:53 -s sh", t).2, 0)
        XCTAssertEqual(s.schedulerName, "sh")
        XCTAssertFalse(s.isPersistent)
        XCTAssertEqual(s.timeout, 0)
        XCTAssertEqual(s.netmask, 0xFFFF_FFFF)
        XCTAssertFalse(s.flags.contains(.onePacket))
        // -E with nothing: the scheduler goes back to wlc
        XCTAssertEqual(adm("-E -u 10.0.0.1:53", t).2, 0)
        XCTAssertEqual(s.schedulerName, "wlc")
    }

    func testEditDestResetsOmittedOptions() throws {
        let t = IPVSTable()
        adm("-A -t 10.0.0.1:80", t)
        XCTAssertEqual(adm("-a -t 10.0.0.1:80 -r 10.0.0.2:8080 -m -w 5 -x 100 -y 10", t).2, 0)
        let d = try XCTUnwrap(t.dest(in: .address(proto: .tcp, addr: v4("10.0.0.1"), port: 80), addr: v4("10.0.0.2"), port: 8080))
        XCTAssertEqual(d.weight, 5)
        XCTAssertEqual(d.forward, .masq)
        // -e with -m only: weight back to 1, thresholds back to 0
        XCTAssertEqual(adm("-e -t 10.0.0.1:80 -r 10.0.0.2:8080 -m", t).2, 0)
        XCTAssertEqual(d.weight, 1)
        XCTAssertEqual(d.upperThreshold, 0)
        XCTAssertEqual(d.lowerThreshold, 0)
        XCTAssertEqual(d.forward, .masq)
        // -e without -m means -g, which forces the vport: that dest does not exist
        let (_, err, rc) = adm("-e -t 10.0.0.1:80 -r 10.0.0.2:8080 -w 3", t)
        XCTAssertEqual(err, "No such destination\n")
        XCTAssertEqual(rc, 255)
    }

    func testAddDeleteFlushZero() {
        let t = specExampleTable()
        XCTAssertEqual(adm("-d -u 192.168.10.100:53 -r 10.0.0.21:53", t).2, 0)
        XCTAssertEqual(t.service(for: .address(proto: .udp, addr: v4("192.168.10.100"), port: 53))?.dests.count, 1)
        XCTAssertEqual(adm("-D -f 5", t).2, 0)
        XCTAssertNil(t.service(for: .fwmark(mark: 5, family: .inet)))
        XCTAssertEqual(adm("-Z", t).2, 0)
        XCTAssertEqual(adm("-Z -t 192.168.10.100:80", t).2, 0)
        XCTAssertEqual(adm("-C", t).2, 0)
        XCTAssertTrue(t.services.isEmpty)
        XCTAssertEqual(adm("-S -n", t).0, "")
    }

    func testSetTimeoutsZeroKeeps() {
        let t = IPVSTable()
        XCTAssertEqual(adm("--set 0 60 0", t).2, 0)
        XCTAssertEqual(t.timeouts, TimeoutSettings(tcp: 900, tcpFin: 60, udp: 300))
    }

    func testDaemons() {
        let env = testEnv()
        let t = IPVSTable()
        XCTAssertEqual(adm("-L --daemon", t, env: env).0, "")
        XCTAssertEqual(adm("--start-daemon master", t, env: env).2, 0)
        XCTAssertEqual(adm("--start-daemon backup --mcast-interface eth1 --syncid 9 --sync-maxlen 1000 --mcast-group 239.0.0.9 --mcast-port 9999 --mcast-ttl 3", t, env: env).2, 0)
        XCTAssertEqual(adm("-L --daemon", t, env: env).0,
            "master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n" +
            "backup sync daemon (mcast=eth1, syncid=9, maxlen=1000, group=239.0.0.9, port=9999, ttl=3)\n")
        let again = adm("--start-daemon master", t, env: env)
        XCTAssertEqual(again.1, "Daemon has already run\n")
        XCTAssertEqual(again.2, 255)
        XCTAssertEqual(adm("--stop-daemon master", t, env: env).2, 0)
        let none = adm("--stop-daemon master", t, env: env)
        XCTAssertEqual(none.1, "No daemon is running\n")
        XCTAssertEqual(none.2, 255)
        XCTAssertEqual(IpvsadmFormat.daemons([SyncDaemonStatus(state: .master, mcastInterface: "eth0", syncID: 0)]),
                       "master sync daemon (mcast=eth0, syncid=0)\n")
    }

    func testHelpAndVersion() {
        var env = testEnv()
        env.program = "switchyard adm"
        let (out, err, rc) = adm("-h", IPVSTable(), env: env)
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(err, "")
        XCTAssertTrue(out.hasPrefix(versionText() + "Usage:\n  switchyard adm -A|E virtual-service [-s scheduler]"), out)
        XCTAssertTrue(out.contains("\n  switchyard adm --stop-daemon {master|backup}\n  switchyard adm -h\n\nCommands:\n"))
        XCTAssertTrue(out.contains("the default scheduler is wlc.\n"))
        XCTAssertTrue(out.hasSuffix("  --mcast-ttl ttl                     Multicast TTL (default=1)\n"))
        XCTAssertTrue(versionText().contains("Switchyard"))
        XCTAssertEqual(adm("--version", IPVSTable()).0, versionText())
        XCTAssertEqual(adm("--help", IPVSTable()).2, 0)
    }

    func testHandBuiltCommandsMissingParts() {
        var out = "", err = ""
        XCTAssertEqual(execute(IpvsadmCommand(kind: .addServer), on: IPVSTable(), environment: testEnv(),
                               output: &out, errors: &err), 2)
        XCTAssertEqual(err, "You need to supply the 'service-address' option for the 'add-server' command\n")
    }

    func testParseErrorsThroughRunIpvsadm() {
        let (out, err, rc) = adm("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 70000", IPVSTable())
        XCTAssertEqual(out, "")
        XCTAssertEqual(err, "illegal weight specified\n")
        XCTAssertEqual(rc, 2)
        var env = testEnv()
        env.program = "switchyard adm"
        let t = adm("-n", IPVSTable(), env: env)
        XCTAssertEqual(t.1, "Try `switchyard adm -h' or 'switchyard adm --help' for more information.\n")
        XCTAssertEqual(t.2, 255)
    }

    func testStatsSourceFromTable() {
        let t = specExampleTable()
        t.rawStats = { owner in
            switch owner {
            case .service: return StatsCounters(conns: 10, inPackets: 20, outPackets: 30, inBytes: 40, outBytes: 50)
            case .dest: return StatsCounters(conns: 1, inPackets: 2, outPackets: 3, inBytes: 4, outBytes: 5)
            case .total: return StatsCounters()
            }
        }
        let out = adm("-Ln --stats -t 192.168.10.100:80", t, env: testEnv(stats: .table(t))).0
        XCTAssertTrue(out.contains("TCP  192.168.10.100:80                  10       20       30       40       50\n"), out)
        XCTAssertTrue(out.contains("  -> 10.0.0.11:80                        1        2        3        4        5\n"), out)
        // -Z makes the current values the zero point
        adm("-Z", t)
        let zeroed = adm("-Ln --stats -t 192.168.10.100:80", t, env: testEnv(stats: .table(t))).0
        XCTAssertTrue(zeroed.contains("TCP  192.168.10.100:80                   0        0        0        0        0\n"), zeroed)
    }
}
