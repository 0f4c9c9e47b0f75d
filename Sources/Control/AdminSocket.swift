// The admin socket: a Unix stream socket, mode 0600 and owned by root, that
// `switchyard adm` (or the binary invoked as `ipvsadm`) talks to.
//
// The server never blocks: the control thread calls `poll()` about every
// millisecond; it accepts, reads what is there, answers whole requests and
// drops clients that send garbage, oversized or truncated requests (after an
// error reply). Several clients are served at once. Forwarding is untouched:
// requests only change the control side's table, which reaches the workers
// through their message rings.
#if canImport(Glibc)
import Glibc
#endif

public final class AdminServer {
    public let path: String
    private var listenFD: Int32 = -1
    private final class Client {
        let fd: Int32
        var inbuf: [UInt8] = []
        var outbuf: [UInt8] = []
        var closeAfterWrite = false
        init(fd: Int32) { self.fd = fd }
    }
    private var clients: [Client] = []
    /// Runs one request on the control side.
    public var handler: (AdminProtocol.Request) -> AdminProtocol.Response

    public init(path: String, handler: @escaping (AdminProtocol.Request) -> AdminProtocol.Response) {
        self.path = path
        self.handler = handler
    }

    public struct SocketError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The default path: /run/switchyard/<file-prefix>.sock.
    public static func defaultPath(filePrefix: String?) -> String {
        "/run/switchyard/\(filePrefix ?? "switchyard").sock"
    }

    public func start() throws {
        // The directory is created for root alone to write; the socket itself is 0600.
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !dir.isEmpty { _ = mkdir(dir, 0o755) }
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(description: "admin socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw SocketError(description: "admin socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        // Create it with no permissions for group or others from the start.
        let old = umask(0o177)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw SocketError(description: "admin socket \(path): \(e)")
        }
        chmod(path, 0o600)
        guard listen(fd, 16) == 0 else {
            close(fd)
            throw SocketError(description: "admin socket listen: \(String(cString: strerror(errno)))")
        }
        listenFD = fd
    }

    public func stop() {
        for c in clients { close(c.fd) }
        clients.removeAll()
        if listenFD >= 0 {
            close(listenFD)
            listenFD = -1
            unlink(path)
        }
    }

    /// Accept, read, answer and write whatever is ready; never waits.
    public func poll() {
        guard listenFD >= 0 else { return }
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 { break }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            if !peerIsRoot(fd) {
                let c = Client(fd: fd)
                c.outbuf = AdminProtocol.encode(AdminProtocol.Response(
                    status: 255, output: "", errors: "Permission denied (you must be root)\n"))
                c.closeAfterWrite = true
                clients.append(c)
                continue
            }
            clients.append(Client(fd: fd))
        }
        var keep: [Client] = []
        for c in clients {
            if service(c) { keep.append(c) } else { close(c.fd) }
        }
        clients = keep
    }

    /// The socket is 0600 root; the peer's credentials are checked as well.
    private func peerIsRoot(_ fd: Int32) -> Bool {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (needs _GNU_SOURCE in C).
        var cred: (Int32, UInt32, UInt32) = (0, 0, 0)
        var len = socklen_t(MemoryLayout<(Int32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 else { return false }
        return cred.1 == 0
    }

    /// Returns false when the client should be closed.
    private func service(_ c: Client) -> Bool {
        if c.outbuf.isEmpty && !c.closeAfterWrite {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
                if n > 0 {
                    c.inbuf += chunk[0..<n]
                    if c.inbuf.count > AdminProtocol.headerLength + AdminProtocol.maxBody { break }
                    continue
                }
                if n == 0 {
                    // Peer closed its side. A whole request still gets its answer
                    // (clients like socat half-close after sending); a partial one
                    // is truncated.
                    if c.inbuf.isEmpty { return false }
                    handleInput(c)
                    if c.outbuf.isEmpty { reply(c, error: AdminProtocol.DecodeError.incomplete.message) }
                    c.closeAfterWrite = true
                    break
                }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                return false
            }
            if c.outbuf.isEmpty && !c.inbuf.isEmpty { handleInput(c) }
        }
        if !c.outbuf.isEmpty {
            let n = c.outbuf.withUnsafeBytes { send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { c.outbuf.removeFirst(n) }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { return false }
            if c.outbuf.isEmpty && c.closeAfterWrite { return false }
        }
        return true
    }

    private func handleInput(_ c: Client) {
        do {
            guard let total = try AdminProtocol.frameLength(c.inbuf), c.inbuf.count >= total else { return }
            let frame = Array(c.inbuf[0..<total])
            c.inbuf.removeFirst(total)
            let req = try AdminProtocol.decodeRequest(frame)
            c.outbuf = AdminProtocol.encode(handler(req))
        } catch {
            reply(c, error: error.message)
        }
    }

    private func reply(_ c: Client, error: String) {
        c.outbuf = AdminProtocol.encode(AdminProtocol.Response(status: 255, output: "",
                                                               errors: "switchyard: \(error)\n"))
        c.inbuf.removeAll()
        c.closeAfterWrite = true
    }
}

/// The client side of `switchyard adm`.
public enum AdminClient {
    public enum Failure: Error {
        case connect(String, Int32)   // message, errno
        case io(String)
        case protocolError(String)
    }

    /// Send one request and wait for the response (blocking: this is the CLI).
    public static func call(path: String, request: AdminProtocol.Request, timeoutSeconds: Int = 30) throws(Failure) -> AdminProtocol.Response {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .connect(String(cString: strerror(errno)), errno) }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw .connect("path too long", ENAMETOOLONG) }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw .connect(String(cString: strerror(errno)), errno) }
        let out = AdminProtocol.encode(request)
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw .io("send: \(String(cString: strerror(errno)))") }
            sent += n
        }
        var inbuf: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            do {
                if let total = try AdminProtocol.frameLength(inbuf), inbuf.count >= total {
                    return try AdminProtocol.decodeResponse(Array(inbuf[0..<total]))
                }
            } catch {
                throw .protocolError(error.message)
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { inbuf += chunk[0..<n]; continue }
            if n == 0 { throw .protocolError("the daemon closed the connection") }
            throw .io("recv: \(String(cString: strerror(errno)))")
        }
    }
}
