import XCTest
@testable import IPVS

final class TCPStateTests: XCTestCase {
    let SYN = TCPFlagBits.syn, ACK = TCPFlagBits.ack, FIN = TCPFlagBits.fin, RST = TCPFlagBits.rst

    func testNumberingNamesActive() {
        XCTAssertEqual(TCPState.allCases.map(\.rawValue), Array(0...10))
        XCTAssertEqual(TCPState.allCases.map(\.name),
                       ["NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
                        "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK"])
        XCTAssertEqual(TCPState.allCases.filter(\.isActive), [.established, .synSent, .synRecv, .synAck])
    }

    func testTimeouts() {
        XCTAssertEqual(TCPState.allCases.map(\.defaultTimeout), [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120])
        var t = TimeoutSettings()
        XCTAssertEqual(TCPState.established.timeout(t), 900)
        t.tcp = 3600; t.tcpFin = 30
        XCTAssertEqual(TCPState.established.timeout(t), 3600)
        XCTAssertEqual(TCPState.finWait.timeout(t), 30)
        XCTAssertEqual(TCPState.timeWait.timeout(t), 120)    // not tied to tcpfin
        XCTAssertEqual(TCPState.synRecv.timeout(t), 60)
        XCTAssertEqual(TCPState.initialTimeout, 3)
        XCTAssertEqual(TimeoutSettings().udp, 300)
    }

    func testFlagPriority() {
        XCTAssertEqual(TCPStateMachine.flagRow(RST | SYN | FIN | ACK), 3)
        XCTAssertEqual(TCPStateMachine.flagRow(SYN | ACK), 0)
        XCTAssertEqual(TCPStateMachine.flagRow(FIN | ACK), 1)
        XCTAssertEqual(TCPStateMachine.flagRow(ACK), 2)
        XCTAssertNil(TCPStateMachine.flagRow(0x08))          // PSH only
        // No RST/SYN/FIN/ACK: CLOSE, whatever the state.
        for s in TCPState.allCases {
            XCTAssertEqual(TCPStateMachine.next(state: s, direction: .input, flags: 0x08), .close)
        }
    }

    func run(_ steps: [(ConnDirection, UInt8)], noOutput: Bool) -> [TCPState] {
        var state = TCPState.none
        var no = noOutput
        var out: [TCPState] = []
        for (dir, flags) in steps {
            let eff = ConnDirection.effective(dir, noOutput: &no)
            state = TCPStateMachine.next(state: state, direction: eff, flags: flags)
            out.append(state)
        }
        return out
    }

    // NAT: client SYN -> SR; RS SYN+ACK -> SR; client ACK -> ES;
    // client FIN -> CW; RS FIN -> TW.
    func testNATLifecycle() {
        let states = run([(.input, SYN), (.output, SYN | ACK), (.input, ACK), (.input, FIN | ACK), (.output, FIN | ACK)],
                         noOutput: false)
        XCTAssertEqual(states, [.synRecv, .synRecv, .established, .closeWait, .timeWait])
        XCTAssertEqual(states.map { $0.timeout(TimeoutSettings()) }, [60, 60, 900, 60, 120])
    }

    // DR/TUN (input only): SYN -> SR; ACK -> ES; FIN -> FW; ACK stays FW; RST -> CL.
    func testDRLifecycle() {
        let states = run([(.input, SYN), (.input, ACK), (.input, FIN | ACK), (.input, ACK), (.input, RST)],
                         noOutput: true)
        XCTAssertEqual(states, [.synRecv, .established, .finWait, .finWait, .close])
        XCTAssertEqual(states.map(\.isActive), [true, true, false, false, false])
    }

    func testNoOutputClearedByFirstOutput() {
        var no = true
        XCTAssertEqual(ConnDirection.effective(.input, noOutput: &no), .inputOnly)
        XCTAssertTrue(no)
        XCTAssertEqual(ConnDirection.effective(.output, noOutput: &no), .output)
        XCTAssertFalse(no)
        XCTAssertEqual(ConnDirection.effective(.input, noOutput: &no), .input)
    }

    func testSampleCells() {
        typealias M = TCPStateMachine
        // INPUT
        XCTAssertEqual(M.next(state: .established, direction: .input, flags: FIN), .closeWait)
        XCTAssertEqual(M.next(state: .lastAck, direction: .input, flags: ACK), .close)
        XCTAssertEqual(M.next(state: .synRecv, direction: .input, flags: RST), .synRecv)
        XCTAssertEqual(M.next(state: .synAck, direction: .input, flags: RST), .synRecv)
        XCTAssertEqual(M.next(state: .listen, direction: .input, flags: SYN), .synRecv)
        // OUTPUT
        XCTAssertEqual(M.next(state: .none, direction: .output, flags: SYN), .synSent)
        XCTAssertEqual(M.next(state: .established, direction: .output, flags: FIN), .finWait)
        XCTAssertEqual(M.next(state: .closeWait, direction: .output, flags: FIN), .timeWait)
        XCTAssertEqual(M.next(state: .listen, direction: .output, flags: ACK), .established)
        XCTAssertEqual(M.next(state: .timeWait, direction: .output, flags: RST), .timeWait)
        XCTAssertEqual(M.next(state: .synSent, direction: .output, flags: RST), .synSent)
        // INPUT_ONLY
        XCTAssertEqual(M.next(state: .established, direction: .inputOnly, flags: FIN), .finWait)
        XCTAssertEqual(M.next(state: .synAck, direction: .inputOnly, flags: RST), .close)
        XCTAssertEqual(M.next(state: .lastAck, direction: .inputOnly, flags: RST), .lastAck)
    }

    func testSecureTables() {
        typealias M = TCPStateMachine
        // An input-only SYN from NONE goes to SYNACK.
        XCTAssertEqual(M.next(state: .none, direction: .inputOnly, flags: SYN, secure: true), .synAck)
        XCTAssertEqual(M.next(state: .finWait, direction: .inputOnly, flags: SYN, secure: true), .synAck)
        XCTAssertEqual(M.next(state: .synRecv, direction: .inputOnly, flags: SYN, secure: true), .synRecv)
        // INPUT: ACK does not promote SR; SA absorbs syn/fin/ack; rst from SA closes.
        XCTAssertEqual(M.next(state: .synRecv, direction: .input, flags: ACK, secure: true), .synRecv)
        XCTAssertEqual(M.next(state: .synRecv, direction: .input, flags: ACK, secure: false), .established)
        for f in [SYN, FIN, ACK] {
            XCTAssertEqual(M.next(state: .synAck, direction: .input, flags: f, secure: true), .synAck)
        }
        XCTAssertEqual(M.next(state: .synAck, direction: .input, flags: RST, secure: true), .close)
        // OUTPUT: SYN moves SR to SA.
        XCTAssertEqual(M.next(state: .synRecv, direction: .output, flags: SYN, secure: true), .synAck)
        XCTAssertEqual(M.next(state: .synRecv, direction: .output, flags: SYN, secure: false), .synRecv)
        // Unchanged cells.
        XCTAssertEqual(M.next(state: .established, direction: .output, flags: FIN, secure: true), .finWait)
        XCTAssertEqual(M.next(state: .synAck, direction: .inputOnly, flags: ACK, secure: true), .established)
    }

    /// Whole tables, row by row, against the spec's text.
    func testFullTablesMatchSpec() {
        let cols: [TCPState] = [.none, .established, .synSent, .synRecv, .finWait, .timeWait, .close,
                                .closeWait, .lastAck, .listen, .synAck]
        let abbrev: [String: TCPState] = ["NO": .none, "ES": .established, "SS": .synSent, "SR": .synRecv,
                                          "FW": .finWait, "TW": .timeWait, "CL": .close, "CW": .closeWait,
                                          "LA": .lastAck, "LI": .listen, "SA": .synAck]
        let flagFor = ["syn": SYN, "fin": FIN, "ack": ACK, "rst": RST]
        let normal = """
        input syn: SR ES ES SR SR SR SR SR SR SR SR
        input fin: CL CW SS TW TW TW CL CW LA LI TW
        input ack: ES ES SS ES FW TW CL CW CL LI ES
        input rst: CL CL CL SR CL CL CL CL LA LI SR
        output syn: SS ES SS SR SS SS SS SS SS LI SR
        output fin: TW FW SS TW FW TW CL TW LA LI TW
        output ack: ES ES SS ES FW TW CL CW LA ES ES
        output rst: CL CL SS CL CL TW CL CL CL CL CL
        inputOnly syn: SR ES ES SR SR SR SR SR SR SR SR
        inputOnly fin: CL FW SS TW FW TW CL CW LA LI TW
        inputOnly ack: ES ES SS ES FW TW CL CW CL LI ES
        inputOnly rst: CL CL CL SR CL CL CL CL LA LI CL
        """
        let dos = """
        input syn: SR ES ES SR SR SR SR SR SR SR SA
        input fin: CL CW SS TW TW TW CL CW LA LI SA
        input ack: ES ES SS SR FW TW CL CW CL LI SA
        input rst: CL CL CL SR CL CL CL CL LA LI CL
        output syn: SS ES SS SA SS SS SS SS SS LI SA
        output fin: TW FW SS TW FW TW CL TW LA LI TW
        output ack: ES ES SS ES FW TW CL CW LA ES ES
        output rst: CL CL SS CL CL TW CL CL CL CL CL
        inputOnly syn: SA ES ES SR SA SA SA SA SA SA SA
        inputOnly fin: CL FW SS TW FW TW CL CW LA LI TW
        inputOnly ack: ES ES SS ES FW TW CL CW CL LI ES
        inputOnly rst: CL CL CL SR CL CL CL CL LA LI CL
        """
        for (text, secure) in [(normal, false), (dos, true)] {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ").map(String.init)
                let dir: ConnDirection = parts[0] == "input" ? .input : parts[0] == "output" ? .output : .inputOnly
                let flags = flagFor[String(parts[1].dropLast())]!
                for (i, cell) in parts[2...].enumerated() {
                    XCTAssertEqual(TCPStateMachine.next(state: cols[i], direction: dir, flags: flags, secure: secure),
                                   abbrev[cell]!, "\(line) col \(i) secure \(secure)")
                }
            }
        }
    }
}
