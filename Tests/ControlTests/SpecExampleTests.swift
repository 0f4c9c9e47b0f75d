import XCTest
@testable import Control
import IPVS

/// The literal examples of IPVS_SEMANTICS.md §12.4, byte for byte.
final class SpecExampleTests: XCTestCase {
    /// Dest lines of -Ln end with 9 spaces (`%-10u` of a one-digit number).
    let specLn =
        "IP Virtual Server version 1.2.1 (size=4096)\n" +
        "Prot LocalAddress:Port Scheduler Flags\n" +
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
        "TCP  192.168.10.100:80 wlc\n" +
        "  -> 10.0.0.11:80                 Masq    1      2          1         \n" +
        "  -> 10.0.0.12:80                 Masq    2      5          0         \n" +
        "UDP  192.168.10.100:53 rr persistent 360\n" +
        "  -> 10.0.0.21:53                 Route   1      0          3         \n" +
        "  -> 10.0.0.22:53                 Route   1      0          4         \n" +
        "FWM  5 sh (sh-port)\n" +
        "  -> 10.0.0.31:0                  Tunnel  1      0          0         \n"

    let specSave =
        "-A -t 192.168.10.100:80 -s wlc\n" +
        "-a -t 192.168.10.100:80 -r 10.0.0.11:80 -m -w 1\n" +
        "-a -t 192.168.10.100:80 -r 10.0.0.12:80 -m -w 2\n" +
        "-A -u 192.168.10.100:53 -s rr -p 360\n" +
        "-a -u 192.168.10.100:53 -r 10.0.0.21:53 -g -w 1\n" +
        "-a -u 192.168.10.100:53 -r 10.0.0.22:53 -g -w 1\n" +
        "-A -f 5 -s sh -b sh-port\n" +
        "-a -f 5 -r 10.0.0.31:0 -i -w 1 --tun-type ipip\n"

    let specStats =
        "IP Virtual Server version 1.2.1 (size=4096)\n" +
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n" +
        "  -> RemoteAddress:Port\n" +
        "TCP  192.168.10.100:80                1234    56789    45678  3456789  123456K\n" +
        "  -> 10.0.0.11:80                      600    30000    20000  1500000 60000000\n" +
        "  -> 10.0.0.12:80                      634    26789    25678  1956789 63456789\n"

    let specRate =
        "IP Virtual Server version 1.2.1 (size=4096)\n" +
        "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n" +
        "  -> RemoteAddress:Port\n" +
        "TCP  192.168.10.100:80                  12      345      300    45678  1234567\n" +
        "  -> 10.0.0.11:80                        6      170      150    22000   600000\n" +
        "  -> 10.0.0.12:80                        6      175      150    23678   634567\n"

    func testListNumericExample() {
        let t = specExampleTable()
        let (out, err, rc) = adm("-Ln", t)
        XCTAssertEqual(rc, 0, err)
        XCTAssertEqual(out, specLn)
        // -L -n, --list --numeric: the same
        XCTAssertEqual(adm("-L -n", t).0, specLn)
        XCTAssertEqual(adm("--list --numeric", t).0, specLn)
    }

    func testSaveExample() {
        let t = specExampleTable()
        let (out, _, rc) = adm("-S -n", t)
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, specSave)
        XCTAssertEqual(adm("-Sn", t).0, specSave)
    }

    func singleServiceTable() -> (IPVSTable, StatsSource) {
        let t = IPVSTable()
        for l in ["-A -t 192.168.10.100:80", "-a -t 192.168.10.100:80 -r 10.0.0.11:80 -m",
                  "-a -t 192.168.10.100:80 -r 10.0.0.12:80 -m -w 2"] {
            XCTAssertEqual(adm(l, t).2, 0)
        }
        let stats = StatsSource(
            service: { _ in StatsCounters(conns: 1234, inPackets: 56789, outPackets: 45678, inBytes: 3456789, outBytes: 123456789) },
            dest: { _, d in
                d.addr == v4("10.0.0.11")
                    ? StatsCounters(conns: 600, inPackets: 30000, outPackets: 20000, inBytes: 1500000, outBytes: 60000000)
                    : StatsCounters(conns: 634, inPackets: 26789, outPackets: 25678, inBytes: 1956789, outBytes: 63456789)
            },
            serviceRate: { _ in RateCounters(cps: 12, inPPS: 345, outPPS: 300, inBPS: 45678, outBPS: 1234567) },
            destRate: { _, d in
                d.addr == v4("10.0.0.11")
                    ? RateCounters(cps: 6, inPPS: 170, outPPS: 150, inBPS: 22000, outBPS: 600000)
                    : RateCounters(cps: 6, inPPS: 175, outPPS: 150, inBPS: 23678, outBPS: 634567)
            })
        return (t, stats)
    }

    func testStatsExample() {
        let (t, stats) = singleServiceTable()
        let (out, _, rc) = adm("-Ln --stats", t, env: testEnv(stats: stats))
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, specStats)
    }

    func testRateExample() {
        let (t, stats) = singleServiceTable()
        let (out, _, rc) = adm("-Ln --rate", t, env: testEnv(stats: stats))
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out, specRate)
    }

    func testSingleServiceListingHasNoVersionLine() {
        let (t, stats) = singleServiceTable()
        let out = adm("-Ln --stats -t 192.168.10.100:80", t, env: testEnv(stats: stats)).0
        XCTAssertEqual(out, String(specStats.drop(while: { $0 != "\n" }).dropFirst()))
        let ln = adm("-L -n -t 192.168.10.100:80", specExampleTable()).0
        XCTAssertEqual(ln, "Prot LocalAddress:Port Scheduler Flags\n" +
                       "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n" +
                       "TCP  192.168.10.100:80 wlc\n" +
                       "  -> 10.0.0.11:80                 Masq    1      2          1         \n" +
                       "  -> 10.0.0.12:80                 Masq    2      5          0         \n")
        let fwm = adm("-L -n -f 5", specExampleTable()).0
        XCTAssertTrue(fwm.hasSuffix("FWM  5 sh (sh-port)\n  -> 10.0.0.31:0                  Tunnel  1      0          0         \n"))
    }

    func testMissingServiceListingFails() {
        let (out, err, rc) = adm("-L -n -t 1.1.1.1:80", specExampleTable())
        XCTAssertEqual(out, "")
        XCTAssertEqual(err, "No such service\n")
        XCTAssertEqual(rc, 1)
    }

    func testConnectionRowExample() {
        let row = ConnectionRow(proto: .tcp, expiresSeconds: 14 * 60 + 58, stateName: "ESTABLISHED",
                                client: (v4("172.16.0.9"), 40312), virtual: (v4("192.168.10.100"), 80),
                                dest: (v4("10.0.0.11"), 80))
        let (out, _, rc) = adm("-Lnc", IPVSTable(), env: testEnv(connections: [row]))
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(out,
            "IPVS connection entries\n" +
            "pro expire state       source             virtual            destination\n" +
            "TCP 14:58  ESTABLISHED 172.16.0.9:40312   192.168.10.100:80  10.0.0.11:80\n")
    }

    func testRoundTripSaveParseApplySave() throws {
        let original = specExampleTable()
        let saved = adm("-S -n", original).0
        let cmds = try parseRules(saved, names: testNames).get()
        XCTAssertEqual(cmds.count, 8)
        let copy = IPVSTable()
        for c in cmds {
            var o = "", e = ""
            XCTAssertEqual(execute(c, on: copy, environment: testEnv(), output: &o, errors: &e), 0, e)
        }
        XCTAssertEqual(adm("-S -n", copy).0, saved)
        XCTAssertEqual(saved, specSave)
        // the list of the copy equals the original's, apart from the counters
        let copyList = adm("-Ln", copy).0
        XCTAssertTrue(copyList.hasPrefix("IP Virtual Server version 1.2.1 (size=4096)\n"))
        XCTAssertEqual(copyList.split(separator: "\n").count, specLn.split(separator: "\n").count)
    }

    func testRestoreFromStdin() {
        let t = IPVSTable()
        let (_, err, rc) = adm("-R", t, env: testEnv(restore: specSave))
        XCTAssertEqual(rc, 0, err)
        XCTAssertEqual(adm("-S -n", t).0, specSave)
    }
}
