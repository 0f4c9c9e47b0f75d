import XCTest
import Synchronization
@testable import Control
import IPVS

/// A services table for tests (the real /etc/services may differ).
let testNames = NameResolver(
    servicesText: """
    # comment line
    ftp\t\t21/tcp
    ssh\t\t22/tcp
    domain\t\t53/tcp
    domain\t\t53/udp
    http\t\t80/tcp\t\twww www-http\t# WorldWideWeb HTTP
    https\t\t443/tcp
    """,
    hostsText: """
    127.0.0.1\tlocalhost
    10.9.8.7\tbackend1.example backend1
    ::1\tip6-localhost
    """)

func v4(_ s: String) -> IPAddress { IPAddress(s)! }

func parseOK(_ args: [String], file: StaticString = #filePath, line: UInt = #line) -> IpvsadmCommand? {
    switch IpvsadmCommand.parse(args, program: "ipvsadm", names: testNames) {
    case .success(let c): return c
    case .failure(let e):
        XCTFail("unexpected error for \(args): \(e.stderr)", file: file, line: line)
        return nil
    }
}

func parseErr(_ args: [String], program: String = "ipvsadm") -> IpvsadmError? {
    switch IpvsadmCommand.parse(args, program: program, names: testNames) {
    case .success: return nil
    case .failure(let e): return e
    }
}

/// Split a command line on blanks.
func words(_ s: String) -> [String] { s.split(separator: " ").map(String.init) }

/// Assert that a command line is refused with exactly `message` and `code`.
func assertRefused(_ line: String, _ message: String, _ code: Int32 = 2,
                   file: StaticString = #filePath, line l: UInt = #line) {
    guard let e = parseErr(words(line)) else {
        XCTFail("accepted: \(line)", file: file, line: l)
        return
    }
    XCTAssertEqual(e.stderr, message + "\n", "for: \(line)", file: file, line: l)
    XCTAssertEqual(e.exitCode, code, "for: \(line)", file: file, line: l)
}

/// Run ipvsadm argument lines against a table; returns (stdout, stderr, rc) of the last.
@discardableResult
func adm(_ line: String, _ table: IPVSAdministrable, env: AdmEnvironment = testEnv()) -> (String, String, Int32) {
    var out = "", err = ""
    let rc = runIpvsadm(words(line), on: table, environment: env, output: &out, errors: &err)
    return (out, err, rc)
}

func testEnv(stats: StatsSource = .zero, connections: [ConnectionRow] = [],
             restore: String? = nil) -> AdmEnvironment {
    AdmEnvironment(program: "ipvsadm", tableSize: 4096, stats: stats, connections: { connections },
                   names: testNames, restoreInput: { restore })
}

func setConns(_ d: Dest, active: Int32, inactive: Int32, persistent: Int32 = 0) {
    d.activeConns.store(active, ordering: .relaxed)
    d.inactiveConns.store(inactive, ordering: .relaxed)
    d.persistConns.store(persistent, ordering: .relaxed)
}

/// The spec's example table (IPVS_SEMANTICS.md §12.4), built with ipvsadm
/// commands, with the connection counts of the -Ln example.
func specExampleTable() -> IPVSTable {
    let t = IPVSTable()
    for l in [
        "-A -t 192.168.10.100:80 -s wlc",
        "-a -t 192.168.10.100:80 -r 10.0.0.11:80 -m -w 1",
        "-a -t 192.168.10.100:80 -r 10.0.0.12:80 -m -w 2",
        "-A -u 192.168.10.100:53 -s rr -p",
        "-a -u 192.168.10.100:53 -r 10.0.0.21 -g",
        "-a -u 192.168.10.100:53 -r 10.0.0.22:53",
        "-A -f 5 -s sh -b sh-port",
        "-a -f 5 -r 10.0.0.31 -i",
    ] {
        let (_, err, rc) = adm(l, t)
        XCTAssertEqual(rc, 0, "\(l): \(err)")
    }
    func dest(_ key: ServiceKey, _ a: String, _ p: UInt16) -> Dest { t.dest(in: key, addr: v4(a), port: p)! }
    let tcp = ServiceKey.address(proto: .tcp, addr: v4("192.168.10.100"), port: 80)
    let udp = ServiceKey.address(proto: .udp, addr: v4("192.168.10.100"), port: 53)
    setConns(dest(tcp, "10.0.0.11", 80), active: 2, inactive: 1)
    setConns(dest(tcp, "10.0.0.12", 80), active: 5, inactive: 0)
    setConns(dest(udp, "10.0.0.21", 53), active: 0, inactive: 3)
    setConns(dest(udp, "10.0.0.22", 53), active: 0, inactive: 4)
    return t
}
