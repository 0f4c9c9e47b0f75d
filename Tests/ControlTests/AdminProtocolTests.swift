import XCTest
@testable import Control
#if canImport(Glibc)
import Glibc
#endif

/// The admin socket's framing: "SYAD" | version u16 | kind u16 | body length
/// u32 | body, big-endian; requests carry argc, the strings (program first)
/// and standard input; responses carry the status, stdout and stderr.
final class AdminProtocolTests: XCTestCase {
    typealias P = AdminProtocol

    // MARK: helpers

    private func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
    private func be32(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }
    private func str(_ s: String) -> [UInt8] { let u = Array(s.utf8); return be32(UInt32(u.count)) + u }
    private func header(version: UInt16 = 1, kind: UInt16, length: UInt32) -> [UInt8] {
        Array("SYAD".utf8) + be16(version) + be16(kind) + be32(length)
    }
    /// A request frame assembled by hand from a raw body.
    private func requestFrame(_ body: [UInt8], version: UInt16 = 1, kind: UInt16 = 1) -> [UInt8] {
        header(version: version, kind: kind, length: UInt32(body.count)) + body
    }

    private func decodeRequestError(_ bytes: [UInt8], file: StaticString = #filePath,
                                    line: UInt = #line) -> P.DecodeError? {
        do {
            let r = try P.decodeRequest(bytes)
            XCTFail("decoded \(r) from a bad frame", file: file, line: line)
            return nil
        } catch {
            return error
        }
    }

    private func decodeResponseError(_ bytes: [UInt8]) -> P.DecodeError? {
        do {
            _ = try P.decodeResponse(bytes)
            return nil
        } catch {
            return error
        }
    }

    private func isMalformed(_ e: P.DecodeError?) -> Bool {
        if case .malformed = e { return true }
        return false
    }

    // MARK: layout

    func testRequestLayoutIsBigEndianAndProgramFirst() {
        let r = P.Request(program: "ipvsadm", arguments: ["-L", "-n"], input: "x")
        let expectedBody = be32(3) + str("ipvsadm") + str("-L") + str("-n") + str("x")
        XCTAssertEqual(P.encode(r), header(kind: 1, length: UInt32(expectedBody.count)) + expectedBody)
        XCTAssertEqual(Array(P.encode(r)[0..<4]), Array("SYAD".utf8))
        XCTAssertEqual(P.headerLength, 12)
    }

    func testResponseLayout() {
        let r = P.Response(status: -1, output: "out", errors: "err\n")
        let expectedBody = be32(0xFFFF_FFFF) + str("out") + str("err\n")
        XCTAssertEqual(P.encode(r), header(kind: 2, length: UInt32(expectedBody.count)) + expectedBody)
    }

    // MARK: round trips

    func testRequestRoundTrips() throws {
        let big = String(repeating: "-a -t 192.0.2.1:80 -r 10.0.0.1:80 -m -w 1\n", count: 50_000)   // ~2 MB
        let cases: [P.Request] = [
            P.Request(program: "ipvsadm", arguments: []),
            P.Request(program: "", arguments: [], input: ""),
            P.Request(program: "switchyard adm", arguments: [""], input: ""),
            P.Request(program: "ipvsadm", arguments: ["", "", ""], input: "\n"),
            P.Request(program: "ipvsadm", arguments: ["-A", "-t", "192.0.2.10:80", "-s", "wrr"]),
            P.Request(program: "ïpvsädm ✓", arguments: ["-L", "日本語", "emoji 🚦🚥", "nul\u{0}inside", "é"],
                      input: "Grüße 👋\r\n\t\u{0}"),
            P.Request(program: "ipvsadm", arguments: ["-R"], input: big),
            P.Request(program: "ipvsadm", arguments: (0..<4095).map { "arg\($0)" }, input: "tail"),
        ]
        for r in cases {
            let bytes = P.encode(r)
            XCTAssertEqual(try P.frameLength(bytes), bytes.count)
            XCTAssertEqual(try P.decodeRequest(bytes), r)
        }
        XCTAssertGreaterThan(P.encode(cases[6]).count, 2_000_000)
    }

    func testResponseRoundTrips() throws {
        let cases: [P.Response] = [
            P.Response(status: 0, output: "", errors: ""),
            P.Response(status: 2, output: "", errors: "illegal weight specified\n"),
            P.Response(status: 255, output: "", errors: "Service already exists\n"),
            P.Response(status: -1, output: "ünïcødé → 🚦", errors: "\u{0}"),
            P.Response(status: Int32.min, output: String(repeating: "x", count: 3_000_000), errors: "e"),
            P.Response(status: Int32.max, output: "a", errors: String(repeating: "é", count: 100_000)),
        ]
        for r in cases {
            let bytes = P.encode(r)
            XCTAssertEqual(try P.frameLength(bytes), bytes.count)
            XCTAssertEqual(try P.decodeResponse(bytes), r)
        }
    }

    // MARK: truncation

    func testEveryTruncationOfARequestIsIncomplete() {
        let r = P.Request(program: "ipvsadm", arguments: ["-a", "-t", "[2001:db8::1]:80", "-r", "ä"],
                          input: "-C\n")
        let bytes = P.encode(r)
        for n in 0..<bytes.count {
            let prefix = Array(bytes[0..<n])
            XCTAssertEqual(decodeRequestError(prefix), .incomplete, "prefix of \(n) bytes")
            // The header alone says how long the frame is; before that, nothing.
            XCTAssertEqual(try P.frameLength(prefix), n < 12 ? nil : bytes.count, "frameLength at \(n)")
        }
        XCTAssertEqual(try P.decodeRequest(bytes), r)
    }

    func testEveryTruncationOfAResponseIsIncomplete() {
        let bytes = P.encode(P.Response(status: 255, output: "out ✓", errors: "No such service\n"))
        for n in 0..<bytes.count {
            XCTAssertEqual(decodeResponseError(Array(bytes[0..<n])), .incomplete, "prefix of \(n) bytes")
        }
    }

    func testEveryTruncationOfAnEmptyRequest() {
        let bytes = P.encode(P.Request(program: "", arguments: []))
        XCTAssertEqual(bytes.count, 12 + 4 + 4 + 4)
        for n in 0..<bytes.count {
            XCTAssertEqual(decodeRequestError(Array(bytes[0..<n])), .incomplete, "prefix of \(n) bytes")
        }
    }

    // MARK: header errors

    func testBadMagic() {
        var bytes = P.encode(P.Request(program: "ipvsadm", arguments: ["-L"]))
        for i in 0..<4 {
            var b = bytes
            b[i] ^= 0x20
            XCTAssertEqual(decodeRequestError(b), .badMagic, "byte \(i)")
            XCTAssertThrowsError(try P.frameLength(b))
            // Known as soon as the fourth byte arrives, before the rest of the header.
            XCTAssertEqual(decodeRequestError(Array(b[0..<4])), .badMagic)
        }
        XCTAssertEqual(decodeRequestError(Array("GET / HTTP/1.1\r\n\r\n".utf8)), .badMagic)
        bytes = Array("syad".utf8) + bytes[4...]
        XCTAssertEqual(decodeRequestError(bytes), .badMagic)
        XCTAssertEqual(decodeResponseError(Array("XXXXXXXXXXXXXXXX".utf8)), .badMagic)
        XCTAssertEqual(P.DecodeError.badMagic.message, "not a switchyard admin request")
    }

    func testWrongVersion() {
        let body = be32(1) + str("ipvsadm") + str("")
        for v: UInt16 in [0, 2, 0x0100, 0xFFFF] {
            let b = requestFrame(body, version: v)
            XCTAssertEqual(decodeRequestError(b), .unsupportedVersion(v))
            // Refused from the header alone.
            XCTAssertEqual(decodeRequestError(Array(b[0..<12])), .unsupportedVersion(v))
        }
        XCTAssertEqual(P.DecodeError.unsupportedVersion(2).message,
                       "unsupported protocol version 2 (this daemon speaks 1)")
        XCTAssertEqual(try P.decodeRequest(requestFrame(body, version: 1)),
                       P.Request(program: "ipvsadm", arguments: []))
    }

    func testWrongKind() {
        let resp = P.encode(P.Response(status: 0, output: "", errors: ""))
        XCTAssertEqual(decodeRequestError(resp), .wrongKind(2))
        let req = P.encode(P.Request(program: "ipvsadm", arguments: []))
        XCTAssertEqual(decodeResponseError(req), .wrongKind(1))
        XCTAssertEqual(decodeRequestError(requestFrame(be32(1) + str("p") + str(""), kind: 0)), .wrongKind(0))
        XCTAssertEqual(decodeRequestError(requestFrame(be32(1) + str("p") + str(""), kind: 7)), .wrongKind(7))
    }

    func testOversizedLength() {
        let limit = P.maxBody
        XCTAssertEqual(limit, 16 << 20)
        for n in [UInt32(limit + 1), UInt32(limit * 2), UInt32.max] {
            let h = header(kind: 1, length: n)
            XCTAssertEqual(decodeRequestError(h), .tooLarge(Int(n)))
            XCTAssertEqual(decodeRequestError(h + [0, 0, 0, 1]), .tooLarge(Int(n)))
            XCTAssertThrowsError(try P.frameLength(h))
            XCTAssertEqual(decodeResponseError(header(kind: 2, length: n)), .tooLarge(Int(n)))
        }
        // Exactly the limit is allowed: the header is fine, the body just has not come yet.
        XCTAssertEqual(try P.frameLength(header(kind: 1, length: UInt32(limit))), 12 + limit)
        XCTAssertEqual(decodeRequestError(header(kind: 1, length: UInt32(limit))), .incomplete)
        XCTAssertEqual(P.DecodeError.tooLarge(limit + 1).message,
                       "request of \(limit + 1) bytes exceeds the \(limit)-byte limit")
    }

    // MARK: inner lengths

    func testMalformedInnerLengths() {
        // argc 0: there is not even a program name.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(0) + str("")))))
        // argc beyond the limit of 4096 strings.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(4097) + str("p") + str("")))))
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(0xFFFF_FFFF) + str("p") + str("")))))
        // 4096 strings in all is still fine.
        let many = be32(4096) + (0..<4096).flatMap { str("a\($0)") } + str("in")
        XCTAssertEqual(try P.decodeRequest(requestFrame(many)).arguments.count, 4095)
        // argc says three strings, only one is there (plus stdin read as the second).
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(3) + str("ipvsadm") + str("")))))
        // A string length running past the end of the body.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(1) + be32(100) + Array("ipvsadm".utf8)))))
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(1) + be32(0xFFFF_FFFF) + [0x41]))))
        // The stdin length past the end.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(1) + str("ipvsadm") + be32(2) + [0x41]))))
        // A length field itself cut short inside the body.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(1) + str("ipvsadm") + [0, 0]))))
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame([0, 0, 1]))))
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame([]))))
        // No stdin string at all.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(1) + str("ipvsadm")))))
        // Text that is not UTF-8.
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(2) + str("ipvsadm") + be32(2) + [0xC3, 0x28]
                                                                   + str("")))))
        XCTAssertTrue(isMalformed(decodeRequestError(requestFrame(be32(1) + str("ipvsadm") + be32(1) + [0xFF]))))
        // A response whose strings overrun.
        XCTAssertTrue(isMalformed(decodeResponseError(header(kind: 2, length: 8) + be32(0) + be32(5))))
        XCTAssertTrue(isMalformed(decodeResponseError(header(kind: 2, length: 2) + [0, 0])))
    }

    func testTrailingBytesInsideTheBodyAreRefused() {
        let good = be32(2) + str("ipvsadm") + str("-L") + str("")
        XCTAssertEqual(try P.decodeRequest(requestFrame(good)), P.Request(program: "ipvsadm", arguments: ["-L"]))
        for extra in [[0], [0, 0, 0, 0], Array("junk".utf8), [UInt8](repeating: 0xAB, count: 1000)] as [[UInt8]] {
            let e = decodeRequestError(requestFrame(good + extra))
            XCTAssertEqual(e, .malformed("trailing bytes"))
            XCTAssertEqual(e?.message, "malformed request: trailing bytes")
        }
    }

    func testBytesAfterTheFrameBelongToTheNextOne() throws {
        // Two requests back to back in one buffer: the header says where the first ends.
        let a = P.encode(P.Request(program: "ipvsadm", arguments: ["-L", "-n"]))
        let b = P.encode(P.Request(program: "ipvsadm", arguments: ["-C"], input: "ü"))
        let both = a + b
        XCTAssertEqual(try P.frameLength(both), a.count)
        XCTAssertEqual(try P.decodeRequest(Array(both[0..<a.count])), try P.decodeRequest(a))
        XCTAssertEqual(try P.decodeRequest(Array(both[a.count...])), P.Request(program: "ipvsadm", arguments: ["-C"], input: "ü"))
        // Decoding the joined buffer yields the first request only.
        XCTAssertEqual(try P.decodeRequest(both), P.Request(program: "ipvsadm", arguments: ["-L", "-n"]))
    }

    func testRandomGarbageNeverTraps() {
        var rng = SplitMix(seed: 0x5EED)
        let good = P.encode(P.Request(program: "ipvsadm", arguments: ["-a", "-t", "1.2.3.4:80", "-r", "10.0.0.1"],
                                      input: "some input"))
        for _ in 0..<20_000 {
            var b = good
            // Flip a few bytes anywhere past the magic and version, or truncate, or extend.
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let i = 6 + Int(rng.next() % UInt64(b.count - 6))
                b[i] = UInt8(truncatingIfNeeded: rng.next())
            }
            if rng.next() % 4 == 0 { b = Array(b[0..<Int(rng.next() % UInt64(b.count))]) }
            if rng.next() % 4 == 0 { b += [UInt8(truncatingIfNeeded: rng.next())] }
            _ = try? P.decodeRequest(b)
            _ = try? P.decodeResponse(b)
            _ = try? P.frameLength(b)
        }
    }

    func testErrorMessages() {
        XCTAssertEqual(P.DecodeError.incomplete.message, "truncated request")
        XCTAssertEqual(P.DecodeError.wrongKind(9).message, "unexpected message kind 9")
        XCTAssertEqual(P.DecodeError.malformed("x").message, "malformed request: x")
    }

    // MARK: the socket, in process

    /// A server on a temporary path, polled on its own thread, answers the client.
    func testServerAndClientInProcess() throws {
        try XCTSkipUnless(getuid() == 0, "the admin socket serves root only")
        let dir = "/tmp/sy-adminproto-\(getpid())"
        let path = dir + "/a.sock"
        let server = AdminServer(path: path) { req in
            P.Response(status: Int32(req.arguments.count), output: req.arguments.joined(separator: ",") + "|" + req.input,
                       errors: req.program)
        }
        try server.start()
        defer { server.stop(); rmdir(dir) }
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(st.st_uid, 0)

        let stop = StopFlag()
        let poller = Thread0 {
            while !stop.value { server.poll(); usleep(200) }
        }
        defer { stop.value = true; poller.join() }

        let r = try AdminClient.call(path: path, request: P.Request(program: "ipvsadm", arguments: ["-L", "✓"],
                                                                    input: "in"))
        XCTAssertEqual(r, P.Response(status: 2, output: "-L,✓|in", errors: "ipvsadm"))
        let big = String(repeating: "0123456789", count: 400_000)
        let r2 = try AdminClient.call(path: path, request: P.Request(program: "p", arguments: [], input: big))
        XCTAssertEqual(r2.output, "|" + big)
        XCTAssertThrowsError(try AdminClient.call(path: dir + "/missing.sock",
                                                  request: P.Request(program: "p", arguments: [])))
    }
}

/// Deterministic 64-bit generator (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class StopFlag: @unchecked Sendable {
    private var m = pthread_mutex_t()
    private var v = false
    init() { pthread_mutex_init(&m, nil) }
    var value: Bool {
        get { pthread_mutex_lock(&m); defer { pthread_mutex_unlock(&m) }; return v }
        set { pthread_mutex_lock(&m); v = newValue; pthread_mutex_unlock(&m) }
    }
}

/// A plain pthread running a closure (no Foundation).
final class Thread0 {
    private var tid = pthread_t()
    private final class Box { let f: () -> Void; init(_ f: @escaping () -> Void) { self.f = f } }
    init(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().f()
            return nil
        }, box)
        precondition(rc == 0)
    }
    func join() { pthread_join(tid, nil) }
}
