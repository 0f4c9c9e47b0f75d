import XCTest
@testable import Control
import IPVS

final class RulesTests: XCTestCase {
    func testCommentsBlankLinesAndIpvsadmPrefix() throws {
        let text = """
        # Switchyard rules

        ipvsadm -A -t 10.0.0.1:80 -s rr   # trailing comment
          -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3
        \t
        ipvsadm
        -A -u 10.0.0.1:53
        """
        let cmds = try parseRules(text, names: testNames).get()
        XCTAssertEqual(cmds.map(\.kind), [.addService, .addServer, .addService])
        XCTAssertEqual(cmds[0].service?.scheduler, "rr")
        XCTAssertEqual(cmds[1].dest?.weight, 3)
    }

    func testBadLineRefusesTheWholeFileNamingTheLine() {
        let text = """
        -A -t 10.0.0.1:80
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m

        # fine so far
        -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 70000
        -A -t 10.0.0.2:80
        """
        guard case .failure(let e) = parseRules(text, names: testNames) else {
            return XCTFail("accepted")
        }
        XCTAssertEqual(e, RuleError(line: 5, message: "illegal weight specified", exitCode: 2))
        // nothing was applied: applyRules refuses up front
        let t = IPVSTable()
        guard case .failure(let e2) = applyRules(text, to: t, environment: testEnv()) else { return XCTFail() }
        XCTAssertEqual(e2.line, 5)
        XCTAssertTrue(t.services.isEmpty)
    }

    func testRuleErrorTexts() {
        func err(_ line: String) -> RuleError? {
            if case .failure(let e) = parseRules(line, names: testNames) { return e }
            return nil
        }
        XCTAssertEqual(err("-A -t 10.0.0.1"), RuleError(line: 1, message: "Zero port specified for non-persistent service"))
        XCTAssertEqual(err("ipvsadm -a -t 10.0.0.1:80"),
                       RuleError(line: 1, message: "You need to supply the 'real-server' option for the 'add-server' command"))
        XCTAssertEqual(err("-L --bogus"), RuleError(line: 1, message: "--bogus: unknown option", exitCode: 255))
        XCTAssertEqual(err("-n"), RuleError(line: 1, message: "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", exitCode: 255))
        XCTAssertEqual(err("-R"), RuleError(line: 1, message: "Try `ipvsadm -h' or 'ipvsadm --help' for more information.", exitCode: 255))
        XCTAssertEqual(err("\n\n-A -t 'x"), RuleError(line: 3, message: "unterminated quote"))
        XCTAssertEqual(err("-h")?.line, 1)
    }

    func testQuotes() {
        XCTAssertEqual(splitRuleWords("-A -t '10.0.0.1:80' -s \"rr\""), ["-A", "-t", "10.0.0.1:80", "-s", "rr"])
        XCTAssertEqual(splitRuleWords("a\\ b \"c \\\"d\\\"\" ''"), ["a b", "c \"d\"", ""])
        XCTAssertEqual(splitRuleWords("x#y # z"), ["x#y"])
        XCTAssertNil(splitRuleWords("'open"))
    }

    func testEveryOptionAddAndAddServerAllow() throws {
        let text = """
        -A -u 10.0.0.1:53 -s sh -p 120 -M 255.255.255.0 --pe sip -o -b sh-port
        -A -f 7 -6 -s mh -b mh-fallback,mh-port -p -M 96
        -A --sctp-service [2001:db8::1]:3868 -s wrr
        -a -u 10.0.0.1:53 -r 10.0.1.1 -i --tun-type gue --tun-port 6080 --tun-csum -w 4 -x 100 -y 50
        -a -u 10.0.0.1:53 -r 10.0.1.2 -i --tun-type gre --tun-nocsum
        -a -u 10.0.0.1:53 -r 2001:db8::7 -i --tun-type gue --tun-port 5555 --tun-remcsum
        -a -f 7 -6 -r [2001:db8::8]:0 -g -w 0
        -a --sctp-service [2001:db8::1]:3868 -r [2001:db8::9]:3868 -m
        --set 900 120 300
        """
        let cmds = try parseRules(text, names: testNames).get()
        XCTAssertEqual(cmds.count, 9)
        let t = IPVSTable()
        XCTAssertNoThrow(try applyRules(text, to: t, environment: testEnv()).get())
        let saved = adm("-S -n", t).0
        XCTAssertEqual(saved,
            "-A -u 10.0.0.1:53 -s sh -p 120 -M 255.255.255.0 --pe sip -o -b sh-port\n" +
            "-a -u 10.0.0.1:53 -r 10.0.1.1:53 -i -w 4 --tun-type gue --tun-port 6080 --tun-csum\n" +
            "-a -u 10.0.0.1:53 -r 10.0.1.2:53 -i -w 1 --tun-type gre --tun-nocsum\n" +
            "-a -u 10.0.0.1:53 -r [2001:db8::7]:53 -i -w 1 --tun-type gue --tun-port 5555 --tun-remcsum\n" +
            "-A --sctp-service [2001:db8::1]:3868 -s wrr\n" +
            "-a --sctp-service [2001:db8::1]:3868 -r [2001:db8::9]:3868 -m -w 1\n" +
            "-A -f 7 -6 -s mh -p 360 -M 96 -b mh-fallback,mh-port\n" +
            "-a -f 7 -6 -r [2001:db8::8]:0 -g -w 0\n")
        // and the saved text loads back to the same table
        let t2 = IPVSTable()
        XCTAssertNoThrow(try applyRules(saved, to: t2, environment: testEnv()).get())
        XCTAssertEqual(adm("-S -n", t2).0, saved)
        // thresholds survive (they are not in -S output)
        let d = t.dest(in: .address(proto: .udp, addr: v4("10.0.0.1"), port: 53), addr: v4("10.0.1.1"), port: 53)
        XCTAssertEqual(d?.upperThreshold, 100)
        XCTAssertEqual(d?.lowerThreshold, 50)
    }

    func testApplyRulesReportsTableErrorsWithTheirLine() {
        let text = "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n"
        guard case .failure(let e) = applyRules(text, to: IPVSTable(), environment: testEnv()) else { return XCTFail() }
        XCTAssertEqual(e, RuleError(line: 2, message: "Service already exists", exitCode: 255))
    }

    func testRestoreContinuesAfterTableErrorsLikeIpvsadm() {
        let t = IPVSTable()
        let input = "-A -t 10.0.0.1:80\n-A -t 10.0.0.1:80\n-A -t 10.0.0.2:80\n"
        let (_, err, rc) = adm("-R", t, env: testEnv(restore: input))
        XCTAssertEqual(err, "Service already exists\n")
        XCTAssertEqual(rc, 0)
        XCTAssertEqual(t.services.count, 2)
        // a bad line refuses the whole input
        let t2 = IPVSTable()
        let (_, err2, rc2) = adm("-R", t2, env: testEnv(restore: "-A -t 10.0.0.1:80\n-A -t 10.0.0.2\n"))
        XCTAssertEqual(err2, "line 2: Zero port specified for non-persistent service\n")
        XCTAssertEqual(rc2, 2)
        XCTAssertTrue(t2.services.isEmpty)
    }

    func testWrrBuiltByRulesStartsLikeTheKernel() throws {
        // A server added later sits at the head of the list.
        let t = IPVSTable()
        try applyRules("-A -t 10.0.0.1:80 -s wrr\n-a -t 10.0.0.1:80 -r 10.0.1.1 -m\n-a -t 10.0.0.1:80 -r 10.0.1.2 -m -w 2\n",
                       to: t, environment: testEnv()).get()
        let s = try XCTUnwrap(t.service(for: .address(proto: .tcp, addr: v4("10.0.0.1"), port: 80)))
        XCTAssertEqual(s.dests.map { $0.addr }, [v4("10.0.1.2"), v4("10.0.1.1")])
    }
}
