import XCTest
import Synchronization
@testable import Control
import IPVS
#if canImport(Glibc)
import Glibc
#endif

/// The rise/fall state machine, scheduling with a fake clock, quiesce /
/// remove / restore, the sorry server, MISC_CHECK codes, and the probes
/// against local sockets.
final class HealthTests: XCTestCase {
    func testRiseFall() {
        var rf = RiseFall(rise: 2, fall: 3)
        XCTAssertTrue(rf.up)
        XCTAssertFalse(rf.record(false)); XCTAssertTrue(rf.pending)
        XCTAssertFalse(rf.record(false))
        XCTAssertFalse(rf.record(true)); XCTAssertFalse(rf.pending)   // a success resets the failure streak
        XCTAssertFalse(rf.record(false))
        XCTAssertFalse(rf.record(false))
        XCTAssertTrue(rf.record(false)); XCTAssertFalse(rf.up)        // third consecutive failure
        XCTAssertFalse(rf.pending)
        XCTAssertFalse(rf.record(false))
        XCTAssertFalse(rf.record(true)); XCTAssertTrue(rf.pending)
        XCTAssertFalse(rf.record(false))                              // streak broken
        XCTAssertFalse(rf.record(true))
        XCTAssertTrue(rf.record(true)); XCTAssertTrue(rf.up)
        var one = RiseFall(rise: 0, fall: 0)                          // clamped to 1/1
        XCTAssertTrue(one.record(false))
        XCTAssertTrue(one.record(true))
    }

    static let config = """
    virtual_server 10.0.0.1 80 {
        delay_loop 10
        lb_algo rr
        sorry_server 10.0.9.9 80
        real_server 10.0.1.1 80 {
            weight 3
            inhibit_on_failure
            TCP_CHECK {
                retry 2
                rise 2
                delay_before_retry 1
            }
        }
        real_server 10.0.1.2 80 {
            weight 2
            TCP_CHECK {
            }
        }
    }
    """

    /// A table with the plan's initial commands applied, and a way to apply more.
    final class Rig {
        let table = IPVSTable()
        let core: HealthCore
        var logs: [String] = []
        init(_ text: String, now: Double = 0) throws {
            let plan = try KeepalivedConfig.parse(text, reader: ConfigFileReader(read: { _ in nil }, glob: { _ in [] })).plan()
            var lines: [String] = []
            core = HealthCore(plan: plan, now: now, log: { lines.append($0) })
            core.log = { [unowned self] in self.logs.append($0) }
            for c in plan.initialCommands { apply(c) }
        }
        func apply(_ c: IpvsadmCommand) {
            var o = "", e = ""
            XCTAssertEqual(execute(c, on: table, environment: testEnv(), output: &o, errors: &e), 0, "\(IpvsadmWords.line(c)): \(e)")
        }
        @discardableResult
        func record(_ server: Int, _ ok: Bool, at t: Double) -> [String] {
            let cmds = core.record(CheckerRef(service: 0, server: server, checker: 0), ok ? .up() : .down("refused"), now: t)
            cmds.forEach(apply)
            return cmds.map(IpvsadmWords.line)
        }
        var save: String { IpvsadmFormat.save(table.services, numeric: true, names: testNames) }
        func due(_ t: Double) -> [Int] { core.due(now: t).map(\.server) }
    }

    func testQuiesceRemoveSorryAndRestoreWithAFakeClock() throws {
        let rig = try Rig(Self.config)
        XCTAssertEqual(rig.save, """
        -A -t 10.0.0.1:80 -s rr
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3
        -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 2

        """)
        XCTAssertEqual(rig.due(0.0), [0])             // first probes are staggered by 10 ms
        XCTAssertEqual(rig.due(0.5), [0, 1])
        // t=0.5: both fail. Server 0 needs two failures; server 1 goes at once (removed).
        XCTAssertEqual(rig.record(0, false, at: 0.5), [])
        XCTAssertEqual(rig.record(1, false, at: 0.5), ["-d -t 10.0.0.1:80 -r 10.0.1.2:80"])
        XCTAssertEqual(rig.logs.last, "health: TCP 10.0.0.1:80 real server 10.0.1.2:80: UP -> DOWN (TCP_CHECK: refused (1 consecutive failures)); removed")
        // Server 0 is retried after delay_before_retry, server 1 (down, nothing pending) after delay_loop.
        XCTAssertEqual(rig.core.nextDue(CheckerRef(service: 0, server: 0, checker: 0)), 1.5)
        XCTAssertEqual(rig.core.nextDue(CheckerRef(service: 0, server: 1, checker: 0)), 10.5)
        XCTAssertEqual(rig.due(1.4), [])
        XCTAssertEqual(rig.due(1.5), [0])
        // t=1.5: second failure: quiesced (inhibit_on_failure), and with no server up the sorry server comes in.
        XCTAssertEqual(rig.record(0, false, at: 1.5), [
            "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 0",
            "-a -t 10.0.0.1:80 -r 10.0.9.9:80 -m -w 1",
        ])
        XCTAssertTrue(rig.logs.contains("health: TCP 10.0.0.1:80 real server 10.0.1.1:80: UP -> DOWN (TCP_CHECK: refused (2 consecutive failures)); quiesced (weight 3 -> 0)"))
        XCTAssertTrue(rig.logs.contains("health: TCP 10.0.0.1:80 sorry server 10.0.9.9:80: no real server is up: sorry server in service (weight 1)"))
        XCTAssertEqual(rig.save, """
        -A -t 10.0.0.1:80 -s rr
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 0
        -a -t 10.0.0.1:80 -r 10.0.9.9:80 -m -w 1

        """)
        XCTAssertEqual(rig.core.nextDue(CheckerRef(service: 0, server: 0, checker: 0)), 11.5)
        // Still failing: nothing changes.
        XCTAssertEqual(rig.record(1, false, at: 10.5), [])
        XCTAssertEqual(rig.record(0, false, at: 11.5), [])
        // Server 0 recovers: rise 2 -> needs two successes, the second after delay_before_retry.
        XCTAssertEqual(rig.record(0, true, at: 21.5), [])
        XCTAssertEqual(rig.core.nextDue(CheckerRef(service: 0, server: 0, checker: 0)), 22.5)
        XCTAssertEqual(rig.record(0, true, at: 22.5), [
            "-e -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3",
            "-d -t 10.0.0.1:80 -r 10.0.9.9:80",
        ])
        XCTAssertEqual(rig.core.nextDue(CheckerRef(service: 0, server: 0, checker: 0)), 32.5)
        // Server 1 recovers at once (rise 1): added back with its configured weight.
        XCTAssertEqual(rig.record(1, true, at: 30.5), ["-a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 2"])
        XCTAssertEqual(rig.save, """
        -A -t 10.0.0.1:80 -s rr
        -a -t 10.0.0.1:80 -r 10.0.1.1:80 -m -w 3
        -a -t 10.0.0.1:80 -r 10.0.1.2:80 -m -w 2

        """)
        let s = rig.core.services[0].servers
        XCTAssertEqual(s.map(\.transitions), [2, 2])
        XCTAssertEqual(s.map(\.up), [true, true])
    }

    func testEveryCheckerMustBeUpAndMiscDynamicWeights() throws {
        let rig = try Rig("""
        virtual_server 10.0.0.1 53 {
            protocol UDP
            lb_kind DR
            real_server 10.0.1.1 53 {
                weight 7
                MISC_CHECK {
                    misc_path /bin/true
                    misc_dynamic
                }
                UDP_CHECK {
                }
            }
        }
        """)
        let misc = CheckerRef(service: 0, server: 0, checker: 0), udp = CheckerRef(service: 0, server: 0, checker: 1)
        func lines(_ c: [IpvsadmCommand]) -> [String] { c.forEach(rig.apply); return c.map(IpvsadmWords.line) }
        XCTAssertEqual(lines(rig.core.record(misc, HealthProbe.miscResult(status: 12, dynamic: true), now: 1)),
                       ["-e -u 10.0.0.1:53 -r 10.0.1.1:53 -g -w 10"])
        XCTAssertEqual(lines(rig.core.record(udp, .down("port unreachable"), now: 1)), ["-d -u 10.0.0.1:53 -r 10.0.1.1:53"])
        XCTAssertEqual(lines(rig.core.record(misc, HealthProbe.miscResult(status: 0, dynamic: true), now: 2)), [])
        // Back up: the last dynamic weight is kept.
        XCTAssertEqual(lines(rig.core.record(udp, .up(), now: 2)), ["-a -u 10.0.0.1:53 -r 10.0.1.1:53 -g -w 10"])
        XCTAssertEqual(lines(rig.core.record(misc, HealthProbe.miscResult(status: 1, dynamic: true), now: 3)),
                       ["-d -u 10.0.0.1:53 -r 10.0.1.1:53"])
    }

    func testMiscExitCodes() {
        XCTAssertEqual(HealthProbe.miscResult(status: 0, dynamic: false), .up("exit 0"))
        XCTAssertEqual(HealthProbe.miscResult(status: 1, dynamic: false), .down("exit 1"))
        XCTAssertEqual(HealthProbe.miscResult(status: 2, dynamic: false), .down("exit 2"))
        XCTAssertEqual(HealthProbe.miscResult(status: 2, dynamic: true), .up("exit 2", weight: 0))
        XCTAssertEqual(HealthProbe.miscResult(status: 255, dynamic: true), .up("exit 255", weight: 253))
        XCTAssertEqual(HealthProbe.miscResult(status: -9, dynamic: true), .down("killed by signal 9"))
    }

    func testMiscCheckRunsTheCommandWithATimeout() {
        var c = CheckerConfig(kind: .misc, location: ConfigLocation(file: "", line: 1))
        c.miscDynamic = true
        c.miscPath = "exit 7"
        XCTAssertEqual(HealthProbe.run(c, address: v4("127.0.0.1"), port: 80), .up("exit 7", weight: 5))
        c.miscPath = "echo noise; echo more >&2; exit 1"
        XCTAssertEqual(HealthProbe.run(c, address: v4("127.0.0.1"), port: 80), .down("exit 1"))
        c.miscPath = "sleep 5 & sleep 5"
        c.miscTimeout = 0.3
        let t0 = HealthProbe.now()
        let r = HealthProbe.run(c, address: v4("127.0.0.1"), port: 80)
        XCTAssertFalse(r.ok)
        XCTAssertTrue(r.reason.hasPrefix("timed out"), r.reason)
        XCTAssertLessThan(HealthProbe.now() - t0, 2)
        let out = Subprocess.run(["/bin/sh", "-c", "printf abc; printf err >&2; exit 3"], timeout: 5)
        XCTAssertEqual(out.status, 3)
        XCTAssertEqual(out.stdout, Array("abc".utf8))
        XCTAssertEqual(out.stderr, Array("err".utf8))
        XCTAssertNotNil(Subprocess.run(["/nonexistent/program"], timeout: 1).error ?? (Subprocess.run(["/nonexistent/program"], timeout: 1).status == 127 ? "127" : nil))
    }

    func testHTTPResponseParsing() {
        let plain = HealthProbe.parseHTTPResponse(Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".utf8))
        XCTAssertEqual(plain.status, 200)
        XCTAssertEqual(plain.body, Array("hello".utf8))
        XCTAssertNil(plain.error)
        let chunked = HealthProbe.parseHTTPResponse(Array("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n".utf8))
        XCTAssertEqual(chunked.status, 404)
        XCTAssertEqual(String(decoding: chunked.body, as: UTF8.self), "hello world")
        XCTAssertNotNil(HealthProbe.parseHTTPResponse(Array("garbage".utf8)).error)
        XCTAssertNotNil(HealthProbe.parseHTTPResponse([]).error)
        XCTAssertNotNil(HealthProbe.parseHTTPResponse(Array("FTP 200\r\n\r\n".utf8)).error)
    }

    /// A listening TCP socket on 127.0.0.1 that answers one HTTP request per connection.
    final class TinyServer {
        let fd: Int32
        let port: UInt16
        var thread = pthread_t()
        let response: [UInt8]
        init(response: String) {
            self.response = Array(response.utf8)
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(s, 8)
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
            fd = s
            port = UInt16(bigEndian: sa.sin_port)
            let box = Unmanaged.passRetained(self).toOpaque()
            pthread_create(&thread, nil, { arg in
                let s = Unmanaged<TinyServer>.fromOpaque(arg!).takeRetainedValue()
                while true {
                    let c = accept(s.fd, nil, nil)
                    if c < 0 { break }
                    var buf = [UInt8](repeating: 0, count: 4096)
                    _ = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                    _ = s.response.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    close(c)
                }
                return nil
            }, box)
        }
        func stop() {
            shutdown(fd, Int32(SHUT_RDWR))
            pthread_join(thread, nil)
            close(fd)
        }
    }

    func testTCPAndHTTPProbesAgainstLocalSockets() {
        let body = "switchyard health page\n"
        let server = TinyServer(response: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
        defer { server.stop() }
        let lo = v4("127.0.0.1")
        var tcp = CheckerConfig(kind: .tcp, location: ConfigLocation(file: "", line: 1))
        tcp.connectTimeout = 2
        XCTAssertEqual(HealthProbe.run(tcp, address: lo, port: server.port), .up("connected"))
        // A closed port: refused.
        let closed = HealthProbe.run(tcp, address: lo, port: 1)
        XCTAssertEqual(closed, .down("connect: Connection refused"))

        var http = CheckerConfig(kind: .http, location: ConfigLocation(file: "", line: 1))
        http.connectTimeout = 2
        var u = URLCheck()
        u.path = "/"
        u.digest = MD5.hex(body)
        http.urls = [u]
        XCTAssertEqual(HealthProbe.run(http, address: lo, port: server.port), .up("/: HTTP ok"))
        http.urls[0].digest = String(repeating: "0", count: 32)
        XCTAssertEqual(HealthProbe.run(http, address: lo, port: server.port),
                       .down("/: digest \(MD5.hex(body)) differs"))
        http.urls[0].digest = nil
        http.urls[0].statusCodes = [201...201]
        XCTAssertEqual(HealthProbe.run(http, address: lo, port: server.port), .down("/: HTTP status 200"))
        // connect_port overrides the server's port.
        http.urls[0].statusCodes = []
        http.connectPort = server.port
        XCTAssertEqual(HealthProbe.run(http, address: lo, port: 1), .up("/: HTTP ok"))
    }

    func testUDPAndICMPProbes() {
        let lo = v4("127.0.0.1")
        var udp = CheckerConfig(kind: .udp, location: ConfigLocation(file: "", line: 1))
        udp.connectTimeout = 0.5
        XCTAssertEqual(HealthProbe.run(udp, address: lo, port: 9), .down("port unreachable"))
        // A bound socket that never answers: up unless a reply is required.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: sa.sin_port)
        XCTAssertEqual(HealthProbe.run(udp, address: lo, port: port), .up("no ICMP error"))
        udp.requireReply = true
        XCTAssertEqual(HealthProbe.run(udp, address: lo, port: port), .down("no reply"))

        var ping = CheckerConfig(kind: .icmp, location: ConfigLocation(file: "", line: 1))
        ping.connectTimeout = 1
        if getuid() == 0 {
            XCTAssertEqual(HealthProbe.run(ping, address: lo, port: 0), .up("echo reply"))
            XCTAssertEqual(HealthProbe.run(ping, address: v4("::1"), port: 0), .up("echo reply"))
        }
    }

    func testMonitorQueuesCommandsForTheControlThread() throws {
        let plan = try KeepalivedConfig.parse("""
        virtual_server 10.0.0.1 80 {
            delay_loop 0.05
            real_server 10.0.1.1 80 {
                inhibit_on_failure
                TCP_CHECK {
                    delay_before_retry 0.01
                }
            }
            real_server 10.0.1.2 80 {
                TCP_CHECK {
                }
            }
        }
        """, reader: ConfigFileReader(read: { _ in nil }, glob: { _ in [] })).plan()
        let healthy = Atomic<Bool>(false)
        let logs = Mutex<[String]>([])
        let monitor = HealthMonitor(plan: plan, probe: { _, addr, _ in
            addr == IPAddress("10.0.1.1")! && !healthy.load(ordering: .relaxed) ? .down("fake failure") : .up("fake ok")
        }, log: { l in logs.withLock { $0.append(l) } })
        let table = IPVSTable()
        func apply(_ c: IpvsadmCommand) {
            var o = "", e = ""
            XCTAssertEqual(execute(c, on: table, environment: testEnv(), output: &o, errors: &e), 0, e)
        }
        monitor.initialCommands.forEach(apply)
        monitor.start()
        defer { monitor.stop() }
        func waitFor(_ weight: Int32) {
            let deadline = HealthProbe.now() + 5
            while HealthProbe.now() < deadline {
                monitor.drain(apply: apply)
                if table.dest(in: .address(proto: .tcp, addr: v4("10.0.0.1"), port: 80), addr: v4("10.0.1.1"), port: 80)?.weight == weight { return }
                usleep(10_000)
            }
            XCTFail("weight never became \(weight)")
        }
        waitFor(0)
        healthy.store(true, ordering: .relaxed)
        waitFor(1)
        XCTAssertTrue(monitor.statusText().contains("10.0.1.1:80"))
        let json = monitor.statusJSON()
        XCTAssertTrue(json.hasPrefix("{\"services\":[{\"service\":\"TCP 10.0.0.1:80\""), json)
        XCTAssertTrue(json.contains("\"state\":\"up\""), json)
        XCTAssertEqual(logs.withLock { $0 }.filter { $0.contains("10.0.1.1:80") }.count, 2, "\(logs.withLock { $0 })")
    }
}
