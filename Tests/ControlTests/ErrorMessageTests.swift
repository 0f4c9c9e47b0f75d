import XCTest
@testable import Control
import IPVS

/// Every validation message of IPVS_SEMANTICS.md §12.1, with its exit code.
final class ErrorMessageTests: XCTestCase {
    func testZeroPortForNonPersistentService() {
        assertRefused("-A -t 1.2.3.4", "Zero port specified for non-persistent service")
        assertRefused("-A -t 1.2.3.4:0", "Zero port specified for non-persistent service")
        assertRefused("-E -u 1.2.3.4:0 -s rr", "Zero port specified for non-persistent service")
        XCTAssertNotNil(parseOK(words("-A -f 3")))          // fwmark services have no port
        XCTAssertNotNil(parseOK(words("-A -t 1.2.3.4:0 -p 10")))
    }

    func testOnePacketOnlyForUDP() {
        assertRefused("-A -t 1.2.3.4:80 -o", "One-Packet Scheduling is only for UDP virtual services")
        assertRefused("-A --sctp-service 1.2.3.4:80 --ops", "One-Packet Scheduling is only for UDP virtual services")
        XCTAssertNotNil(parseOK(words("-A -u 1.2.3.4:53 -o")))
        XCTAssertNotNil(parseOK(words("-A -f 1 -o")))
    }

    func testIllegalAddresses() {
        assertRefused("-A -t foo..bar:80", "illegal virtual server address[:port] specified")
        assertRefused("-a -t 1.2.3.4:80 -r 1.2.3.4.5", "illegal real server address[:port] specified")
    }

    func testYouNeedToSupply() {
        assertRefused("-A", "You need to supply the 'service-address' option for the 'add-service' command")
        assertRefused("-E -s rr", "You need to supply the 'service-address' option for the 'edit-service' command")
        assertRefused("-D", "You need to supply the 'service-address' option for the 'delete-service' command")
        assertRefused("-a -t 1.2.3.4:80", "You need to supply the 'real-server' option for the 'add-server' command")
        assertRefused("-e -t 1.2.3.4:80 -w 3", "You need to supply the 'real-server' option for the 'edit-server' command")
        assertRefused("-d -t 1.2.3.4:80", "You need to supply the 'real-server' option for the 'delete-server' command")
        assertRefused("-a -r 1.2.3.4:80", "You need to supply the 'service-address' option for the 'add-server' command")
    }

    func testIllegalOptionWithCommand() {
        assertRefused("-A -t 1.2.3.4:80 -r 5.6.7.8", "Illegal 'real-server' option with the 'add-service' command")
        assertRefused("-A -t 1.2.3.4:80 -w 1", "Illegal 'weight' option with the 'add-service' command")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -s rr", "Illegal 'scheduler' option with the 'add-server' command")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -p", "Illegal 'persistent' option with the 'add-server' command")
        assertRefused("-d -t 1.2.3.4:80 -r 5.6.7.8 -m", "Illegal 'forwarding-method' option with the 'delete-server' command")
        assertRefused("-D -t 1.2.3.4:80 -s rr", "Illegal 'scheduler' option with the 'delete-service' command")
        assertRefused("-C -n", "Illegal 'numeric' option with the 'flush' command")
        assertRefused("-C -t 1.2.3.4:80", "Illegal 'service-address' option with the 'flush' command")
        assertRefused("-S -c", "Illegal 'connection' option with the 'save' command")
        assertRefused("-S --nosort", "Illegal 'nosort' option with the 'save' command")
        assertRefused("-L -s rr", "Illegal 'scheduler' option with the 'list' command")
        assertRefused("-L --tun-type gre", "Illegal 'tun-type' option with the 'list' command")
        assertRefused("-Z -n", "Illegal 'numeric' option with the 'zero' command")
        assertRefused("-R -n", "Illegal 'numeric' option with the 'restore' command")
        assertRefused("--set 1 2 3 -n", "Illegal 'numeric' option with the 'set' command")
        assertRefused("-A -t 1.2.3.4:80 --json", "Illegal 'json' option with the 'add-service' command")
        // the first offending column in table order wins
        assertRefused("-A -n -r 1.2.3.4", "Illegal 'numeric' option with the 'add-service' command")
    }

    func testExclusiveListOptions() {
        assertRefused("-L -c -t 1.2.3.4:80",
                      "The option 'service-address' conflicts with the 'connection' option in the 'list' command")
        assertRefused("-L --timeout --daemon",
                      "The option 'daemon' conflicts with the 'timeout' option in the 'list' command")
        assertRefused("-L -c --timeout",
                      "The option 'timeout' conflicts with the 'connection' option in the 'list' command")
    }

    func testListOptionConflicts() {
        assertRefused("-L -c --stats", "options conflicts in the list command")
        assertRefused("-L --timeout --rate", "options conflicts in the list command")
        assertRefused("-L --daemon --thresholds", "options conflicts in the list command")
        assertRefused("-L --timeout --persistent-conn", "options conflicts in the list command")
        XCTAssertNotNil(parseOK(words("-L -c --persistent-conn")))
    }

    func testMultipleCommandsAndOptions() {
        assertRefused("-A -t 1.2.3.4:80 -E", "multiple commands specified")
        assertRefused("-L -L", "multiple commands specified")
        assertRefused("-LZ", "multiple commands specified")
        assertRefused("-L --set 1 2 3", "multiple commands specified")
        assertRefused("-A -t 1.2.3.4:80 -u 1.2.3.4:80", "multiple 'service-address' options specified")
        assertRefused("-A -t 1.2.3.4:80 -f 1", "multiple 'service-address' options specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -m -g", "multiple 'forwarding-method' options specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 1 -w 2", "multiple 'weight' options specified")
        assertRefused("-Lnn", "multiple 'numeric' options specified")
        assertRefused("-A -t 1.2.3.4:80 -p -p", "multiple 'persistent' options specified")
        // -h / -v after the command are not commands in ipvsadm's loop
        assertRefused("-L -h", "invalid option `-h'")
        assertRefused("-Lv", "invalid option `-Lv'")
    }

    func testUnexpectedArgument() {
        assertRefused("-L foo", "unexpected argument foo")
        assertRefused("-C 1.2.3.4", "unexpected argument 1.2.3.4")
    }

    func testTryHelpWhenTheFirstOptionIsNotACommand() {
        let tryLine = "Try `ipvsadm -h' or 'ipvsadm --help' for more information."
        assertRefused("-n -L", tryLine, 255)
        assertRefused("-nL", tryLine, 255)
        assertRefused("--bogus", tryLine, 255)
        assertRefused("-q", tryLine, 255)
        assertRefused("foo", tryLine, 255)
        assertRefused("-t 1.2.3.4:80", tryLine, 255)
        let e = parseErr(["-n"], program: "switchyard adm")
        XCTAssertEqual(e?.stderr, "Try `switchyard adm -h' or 'switchyard adm --help' for more information.\n")
        XCTAssertEqual(e?.exitCode, 255)
    }

    func testPoptErrorsAfterTheCommand() {
        assertRefused("-L --bogus", "--bogus: unknown option", 255)
        assertRefused("-Lq", "-Lq: unknown option", 255)
        assertRefused("-A -t", "-t: missing argument", 255)
        assertRefused("-A --tcp-service", "--tcp-service: missing argument", 255)
        assertRefused("-L --stats=1", "--stats=1: option does not take an argument", 255)
    }

    func testHelpAndVersionStopParsing() {
        XCTAssertEqual(parseOK(words("-h --bogus"))?.kind, .help)
        XCTAssertEqual(parseOK(words("-v -L"))?.kind, .version)
    }

    func testRangeErrors() {
        assertRefused("-A -t 1.2.3.4:80 -p 99999999999999999999", "invalid timeout value `99999999999999999999' specified")
        assertRefused("-a -t 1.2.3.4:80 -r 5.6.7.8 -w 99999999999999999999", "illegal weight specified")
    }
}
