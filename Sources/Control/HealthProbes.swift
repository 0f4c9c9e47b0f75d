// The probes behind each checker, run by checker threads through the
// kernel's sockets (the management side; the data plane is not involved).
// Every probe is bounded by its connect_timeout (MISC_CHECK: misc_timeout).
//
// - TCP_CHECK: a non-blocking connect(); up when it completes.
// - HTTP_GET: HTTP/1.0 GET over a plain socket written here (one connection
//   per url, `Connection: close`, body read to EOF, chunked bodies decoded);
//   up when every url answers with an accepted status (default 200-299) and,
//   if a digest is set, the MD5 of the body matches it.
// - SSL_GET: the same request made by the `curl` program (`curl -sk`, the
//   body on stdout, the status through `-w %{stderr}%{http_code}`): TLS
//   without linking a TLS library into Switchyard; certificates are not
//   verified, as keepalived does not verify them. curl is in APT_PKGS.
// - UDP_CHECK: a datagram (payload, default empty) to the port; down on an
//   ICMP port unreachable (ECONNREFUSED), up on a reply, and up on silence
//   unless require_reply is set.
// - PING_CHECK: ICMP/ICMPv6 echo over a raw socket (needs root or
//   CAP_NET_RAW); up when the matching echo reply arrives.
// - MISC_CHECK: `/bin/sh -c misc_path` in its own process group, killed
//   (the whole group) at misc_timeout; exit 0 = up, 1 = down; with
//   misc_dynamic 2..255 = up with weight code - 2, else any other code = down.

import IPVS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum HealthProbe {
    /// Run one checker's probe against a real server.
    public static func run(_ c: CheckerConfig, address: IPAddress, port: UInt16) -> ProbeResult {
        let addr = c.connectIP ?? address
        let p = c.connectPort ?? port
        switch c.kind {
        case .tcp: return tcp(addr, p, bind: c.bindTo, timeout: c.connectTimeout)
        case .http, .https:
            for u in c.urls {
                let host = u.virtualhost ?? c.virtualhost ?? IpvsadmWords.hostPort(addr, p)
                let r: HTTPResult
                if c.kind == .http {
                    r = httpGet(addr, p, path: u.path, host: host, bind: c.bindTo, timeout: c.connectTimeout)
                } else {
                    r = curlGet(addr, p, path: u.path, host: host, timeout: c.connectTimeout)
                }
                if let e = r.error { return .down(e) }
                if !u.accepts(r.status) { return .down("\(u.path): HTTP status \(r.status)") }
                if let want = u.digest {
                    let got = MD5.hex(r.body)
                    if got != want { return .down("\(u.path): digest \(got) differs") }
                }
            }
            return .up(c.urls.count == 1 ? "\(c.urls[0].path): HTTP ok" : "\(c.urls.count) urls ok")
        case .udp: return udp(addr, p, payload: c.payload, requireReply: c.requireReply, timeout: c.connectTimeout)
        case .icmp: return ping(addr, timeout: c.connectTimeout)
        case .misc: return misc(c)
        }
    }

    // MARK: - Socket helpers

    /// Monotonic seconds.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func errorText(_ e: Int32) -> String { String(cString: strerror(e)) }

    /// Call `body` with a sockaddr for addr:port.
    static func withSockaddr<R>(_ a: IPAddress, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        if a.isV4 {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr.s_addr = a.v4.bigEndian
            return withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &sa.sin6_addr) { a.store(to: $0.baseAddress!) }
        return withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    static func address(of storage: sockaddr_storage) -> IPAddress? {
        var s = storage
        return withUnsafeBytes(of: &s) { raw -> IPAddress? in
            let fam = Int32(raw.load(as: sa_family_t.self))
            if fam == AF_INET {
                let sin = raw.load(as: sockaddr_in.self)
                return IPAddress(v4: UInt32(bigEndian: sin.sin_addr.s_addr))
            }
            if fam == AF_INET6 {
                let off = MemoryLayout<sockaddr_in6>.offset(of: \sockaddr_in6.sin6_addr)!
                return IPAddress(v6: raw.baseAddress! + off)
            }
            return nil
        }
    }

    /// Wait for `events` on fd until the deadline; the revents, 0 on timeout.
    static func wait(_ fd: Int32, _ events: Int16, until deadline: Double) -> Int16 {
        while true {
            let left = deadline - now()
            if left <= 0 { return 0 }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, Int32(min(left * 1000, 1e6).rounded(.up)))
            if rc > 0 { return p.revents }
            if rc < 0 && errno != EINTR { return Int16(POLLERR) }
        }
    }

    /// A connected non-blocking TCP socket, or the reason it failed.
    static func connectTCP(_ a: IPAddress, _ port: UInt16, bind bindAddr: IPAddress?, deadline: Double) -> (Int32, String?) {
        let fd = socket(a.isV4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return (-1, "socket: \(errorText(errno))") }
        if let b = bindAddr {
            let rc = withSockaddr(b, 0) { Glibc.bind(fd, $0, $1) }
            if rc != 0 { let e = errno; close(fd); return (-1, "bind \(inetNtop(b)): \(errorText(e))") }
        }
        let rc = withSockaddr(a, port) { connect(fd, $0, $1) }
        if rc != 0 && errno != EINPROGRESS {
            let e = errno; close(fd); return (-1, "connect: \(errorText(e))")
        }
        if rc != 0 {
            let ev = wait(fd, Int16(POLLOUT), until: deadline)
            if ev == 0 { close(fd); return (-1, "connect: timed out") }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 { close(fd); return (-1, "connect: \(errorText(err))") }
        }
        return (fd, nil)
    }

    // MARK: - TCP

    static func tcp(_ a: IPAddress, _ port: UInt16, bind: IPAddress?, timeout: Double) -> ProbeResult {
        let (fd, err) = connectTCP(a, port, bind: bind, deadline: now() + timeout)
        if let e = err { return .down(e) }
        close(fd)
        return .up("connected")
    }

    // MARK: - HTTP

    struct HTTPResult {
        var status = 0
        var body: [UInt8] = []
        var error: String? = nil
    }

    static let maxResponse = 8 << 20

    static func httpGet(_ a: IPAddress, _ port: UInt16, path: String, host: String, bind: IPAddress?,
                        timeout: Double) -> HTTPResult {
        let deadline = now() + timeout
        let (fd, err) = connectTCP(a, port, bind: bind, deadline: deadline)
        if let e = err { return HTTPResult(error: e) }
        defer { close(fd) }
        let req = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\nUser-Agent: switchyard-health\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8)
        var sent = 0
        while sent < req.count {
            let n = req.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                if wait(fd, Int16(POLLOUT), until: deadline) == 0 { return HTTPResult(error: "send: timed out") }
                continue
            }
            return HTTPResult(error: "send: \(errorText(errno))")
        }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                data += buf[0..<n]
                if data.count > maxResponse { return HTTPResult(error: "response larger than \(maxResponse) bytes") }
                continue
            }
            if n == 0 { break }
            if errno == EAGAIN || errno == EINTR {
                if wait(fd, Int16(POLLIN), until: deadline) == 0 { return HTTPResult(error: "read: timed out") }
                continue
            }
            return HTTPResult(error: "read: \(errorText(errno))")
        }
        return parseHTTPResponse(data)
    }

    /// Status and body of a whole HTTP/1.x response (chunked bodies decoded).
    static func parseHTTPResponse(_ data: [UInt8]) -> HTTPResult {
        var headerEnd = -1
        if data.count >= 4 {
            for i in 0...(data.count - 4) where data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 {
                headerEnd = i
                break
            }
        }
        if headerEnd < 0 { return HTTPResult(error: data.isEmpty ? "empty response" : "malformed HTTP response") }
        let head = String(decoding: data[0..<headerEnd], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let status = lines[0].split(separator: " ")
        guard status.count >= 2, status[0].hasPrefix("HTTP/"), let code = Int(status[1]) else {
            return HTTPResult(error: "malformed status line")
        }
        var body = Array(data[(headerEnd + 4)...])
        let chunked = lines.dropFirst().contains {
            let l = $0.lowercased()
            return l.hasPrefix("transfer-encoding:") && l.contains("chunked")
        }
        if chunked {
            guard let b = dechunk(body) else { return HTTPResult(error: "malformed chunked body") }
            body = b
        }
        return HTTPResult(status: code, body: body)
    }

    static func dechunk(_ b: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        var i = 0
        while i < b.count {
            var j = i
            while j + 1 < b.count && !(b[j] == 13 && b[j + 1] == 10) { j += 1 }
            guard j + 1 < b.count else { return nil }
            let sizeText = String(decoding: b[i..<j], as: UTF8.self).split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(), radix: 16) else { return nil }
            i = j + 2
            if size == 0 { return out }
            guard i + size <= b.count else { return nil }
            out += b[i..<(i + size)]
            i += size + 2
        }
        return nil
    }

    static func curlGet(_ a: IPAddress, _ port: UInt16, path: String, host: String, timeout: Double) -> HTTPResult {
        let url = "https://\(IpvsadmWords.hostPort(a, port))\(path)"
        let t = String(timeout)
        let argv = ["curl", "-s", "-k", "--http1.1", "--connect-timeout", t, "--max-time", t,
                    "-H", "Host: \(host)", "-H", "User-Agent: switchyard-health",
                    "-w", "%{stderr}%{http_code}", "-o", "-", url]
        let r = Subprocess.run(argv, timeout: timeout + 1)
        if let e = r.error { return HTTPResult(error: "curl: \(e)") }
        if r.status != 0 { return HTTPResult(error: "curl exit \(r.status)") }
        let codeText = String(decoding: r.stderr, as: UTF8.self)
        guard let code = Int(codeText.suffix(3)), code > 0 else { return HTTPResult(error: "curl: no HTTP status") }
        return HTTPResult(status: code, body: r.stdout)
    }

    // MARK: - UDP

    static func udp(_ a: IPAddress, _ port: UInt16, payload: [UInt8], requireReply: Bool, timeout: Double) -> ProbeResult {
        let fd = socket(a.isV4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { return .down("socket: \(errorText(errno))") }
        defer { close(fd) }
        if withSockaddr(a, port, { connect(fd, $0, $1) }) != 0 { return .down("connect: \(errorText(errno))") }
        let n = payload.withUnsafeBytes { send(fd, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, $0.count, 0) }
        if n < 0 { return .down("send: \(errorText(errno))") }
        let deadline = now() + timeout
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            if wait(fd, Int16(POLLIN), until: deadline) == 0 {
                return requireReply ? .down("no reply") : .up("no ICMP error")
            }
            let r = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if r >= 0 { return .up("reply of \(r) bytes") }
            if errno == ECONNREFUSED { return .down("port unreachable") }
            if errno != EAGAIN && errno != EINTR { return .down("recv: \(errorText(errno))") }
        }
    }

    // MARK: - ICMP echo

    static let pingSequence = Atomic<UInt16>(0)

    static func ping(_ a: IPAddress, timeout: Double) -> ProbeResult {
        let v4 = a.isV4
        let fd = socket(v4 ? AF_INET : AF_INET6, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
                        v4 ? Int32(IPPROTO_ICMP) : Int32(IPPROTO_ICMPV6))
        if fd < 0 { return .down("raw socket: \(errorText(errno))") }
        defer { close(fd) }
        let ident = UInt16(truncatingIfNeeded: getpid()) ^ UInt16(truncatingIfNeeded: pthread_self())
        let seq = pingSequence.add(1, ordering: .relaxed).newValue
        var pkt: [UInt8] = [v4 ? 8 : 128, 0, 0, 0, UInt8(ident >> 8), UInt8(ident & 255), UInt8(seq >> 8), UInt8(seq & 255)]
        pkt += Array("switchyard-health".utf8)
        if v4 {
            var sum: UInt32 = 0
            var i = 0
            while i < pkt.count {
                sum += UInt32(pkt[i]) << 8 | (i + 1 < pkt.count ? UInt32(pkt[i + 1]) : 0)
                i += 2
            }
            while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
            let c = ~UInt16(sum)
            pkt[2] = UInt8(c >> 8); pkt[3] = UInt8(c & 255)
        }   // ICMPv6: the kernel fills the checksum on raw ICMPv6 sockets.
        let sent = withSockaddr(a, 0) { sa, len in pkt.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) } }
        if sent < 0 { return .down("send: \(errorText(errno))") }
        let deadline = now() + timeout
        var buf = [UInt8](repeating: 0, count: 2048)
        while true {
            if wait(fd, Int16(POLLIN), until: deadline) == 0 { return .down("no echo reply") }
            var from = sockaddr_storage()
            var flen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buf.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &flen) }
                }
            }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return .down("recv: \(errorText(errno))")
            }
            guard address(of: from) == a else { continue }
            var off = 0
            if v4 { off = Int(buf[0] & 0x0F) * 4 }
            guard n >= off + 8 else { continue }
            let type = buf[off]
            let rid = UInt16(buf[off + 4]) << 8 | UInt16(buf[off + 5])
            let rseq = UInt16(buf[off + 6]) << 8 | UInt16(buf[off + 7])
            if type == (v4 ? 0 : 129) && rid == ident && rseq == seq { return .up("echo reply") }
        }
    }

    // MARK: - MISC_CHECK

    static func misc(_ c: CheckerConfig) -> ProbeResult {
        let timeout = c.miscTimeout ?? c.delayLoop
        let r = Subprocess.run(["/bin/sh", "-c", c.miscPath], timeout: timeout)
        if let e = r.error { return .down(e) }
        return miscResult(status: r.status, dynamic: c.miscDynamic)
    }

    /// MISC_CHECK's exit code rule.
    public static func miscResult(status: Int32, dynamic: Bool) -> ProbeResult {
        switch status {
        case 0: return .up("exit 0")
        case 1: return .down("exit 1")
        case 2...255 where dynamic: return .up("exit \(status)", weight: status - 2)
        default: return .down(status < 0 ? "killed by signal \(-status)" : "exit \(status)")
        }
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

/// Run a program with a deadline, collecting stdout and stderr.
public enum Subprocess {
    public struct Result {
        /// Exit status, or minus the signal number.
        public var status: Int32 = 0
        public var stdout: [UInt8] = []
        public var stderr: [UInt8] = []
        public var error: String? = nil
    }

    static let spawnLock = Mutex<Int>(0)

    public static func run(_ argv: [String], timeout: Double) -> Result {
        // pipe2 is not imported; pipe + FD_CLOEXEC under one lock with the
        // spawn, so no concurrently spawned child inherits the write ends.
        let spawned = spawnLock.withLock { _ -> (pid_t, Int32, Int32, String?) in
            var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
            guard pipe(&outPipe) == 0 else { return (0, -1, -1, "pipe: \(HealthProbe.errorText(errno))") }
            guard pipe(&errPipe) == 0 else {
                close(outPipe[0]); close(outPipe[1])
                return (0, -1, -1, "pipe: \(HealthProbe.errorText(errno))")
            }
            for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
            posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
            var attr = posix_spawnattr_t()
            posix_spawnattr_init(&attr)
            posix_spawnattr_setpgroup(&attr, 0)
            var defaults = sigset_t()
            sigfillset(&defaults)
            posix_spawnattr_setsigdefault(&attr, &defaults)
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigmask(&attr, &none)
            posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
            let cargs = argv.map { strdup($0) } + [nil]
            var pid: pid_t = 0
            let rc = posix_spawnp(&pid, argv[0], &actions, &attr, cargs, environ)
            for p in cargs { free(p) }
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attr)
            close(outPipe[1]); close(errPipe[1])
            if rc != 0 {
                close(outPipe[0]); close(errPipe[0])
                return (0, -1, -1, "cannot run \(argv[0]): \(HealthProbe.errorText(rc))")
            }
            return (pid, outPipe[0], errPipe[0], nil)
        }
        if let e = spawned.3 { return Result(error: e) }
        let pid = spawned.0
        let outPipe = [spawned.1], errPipe = [spawned.2]
        var result = Result()
        let deadline = HealthProbe.now() + timeout
        var fds = [pollfd(fd: outPipe[0], events: Int16(POLLIN), revents: 0),
                   pollfd(fd: errPipe[0], events: Int16(POLLIN), revents: 0)]
        var open = 2
        var timedOut = false
        var buf = [UInt8](repeating: 0, count: 65536)
        while open > 0 {
            let left = deadline - HealthProbe.now()
            if left <= 0 { timedOut = true; break }
            let n = poll(&fds, 2, Int32(min(left * 1000, 1e6).rounded(.up)))
            if n < 0 && errno != EINTR { break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let r = buf.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if r > 0 {
                    if i == 0 { result.stdout += buf[0..<r] } else { result.stderr += buf[0..<r] }
                    if result.stdout.count > HealthProbe.maxResponse { timedOut = true; break }
                } else if r == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(fds[i].fd)
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        if timedOut { kill(-pid, SIGKILL) }
        for f in fds where f.fd >= 0 { close(f.fd) }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        if timedOut { result.error = "timed out after \(timeout) s"; return result }
        // WIFEXITED / WEXITSTATUS / WTERMSIG by hand (macros are not imported).
        if st & 0x7F == 0 { result.status = (st >> 8) & 0xFF } else { result.status = -(st & 0x7F) }
        return result
    }
}
