// The admin socket's wire format: one request, one response, per connection
// turn. Both are length-prefixed frames so a reader always knows whether it
// has a whole message, a truncated one, or garbage.
//
// Frame:    magic "SYAD" | version u16 | kind u16 | body length u32 | body
// Request (kind 1) body:  u32 argc, then argc × (u32 length, UTF-8 bytes)
//                         program name first; then u32 length + standard input
// Response (kind 2) body: i32 exit status, u32 length + stdout, u32 length + stderr
// All integers are big-endian. A request over `maxBody` bytes is refused.

public enum AdminProtocol {
    public static let magic: [UInt8] = Array("SYAD".utf8)
    public static let version: UInt16 = 1
    public static let headerLength = 12
    public static let maxBody = 16 << 20
    static let kindRequest: UInt16 = 1
    static let kindResponse: UInt16 = 2

    public struct Request: Equatable, Sendable {
        public var program: String
        public var arguments: [String]
        public var input: String
        public init(program: String, arguments: [String], input: String = "") {
            self.program = program; self.arguments = arguments; self.input = input
        }
    }

    public struct Response: Equatable, Sendable {
        public var status: Int32
        public var output: String
        public var errors: String
        public init(status: Int32, output: String, errors: String) {
            self.status = status; self.output = output; self.errors = errors
        }
    }

    public enum DecodeError: Error, Equatable {
        case incomplete          // need more bytes
        case badMagic
        case unsupportedVersion(UInt16)
        case wrongKind(UInt16)
        case tooLarge(Int)
        case malformed(String)

        public var message: String {
            switch self {
            case .incomplete: return "truncated request"
            case .badMagic: return "not a switchyard admin request"
            case .unsupportedVersion(let v): return "unsupported protocol version \(v) (this daemon speaks \(AdminProtocol.version))"
            case .wrongKind(let k): return "unexpected message kind \(k)"
            case .tooLarge(let n): return "request of \(n) bytes exceeds the \(AdminProtocol.maxBody)-byte limit"
            case .malformed(let why): return "malformed request: \(why)"
            }
        }
    }

    // MARK: encoding

    static func frame(kind: UInt16, body: [UInt8]) -> [UInt8] {
        var out = magic
        put16(&out, version)
        put16(&out, kind)
        put32(&out, UInt32(body.count))
        return out + body
    }

    static func put16(_ b: inout [UInt8], _ v: UInt16) { b += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    static func put32(_ b: inout [UInt8], _ v: UInt32) {
        b += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }
    static func putString(_ b: inout [UInt8], _ s: String) {
        let u = Array(s.utf8)
        put32(&b, UInt32(u.count))
        b += u
    }

    public static func encode(_ r: Request) -> [UInt8] {
        var body: [UInt8] = []
        put32(&body, UInt32(r.arguments.count + 1))
        putString(&body, r.program)
        for a in r.arguments { putString(&body, a) }
        putString(&body, r.input)
        return frame(kind: kindRequest, body: body)
    }

    public static func encode(_ r: Response) -> [UInt8] {
        var body: [UInt8] = []
        put32(&body, UInt32(bitPattern: r.status))
        putString(&body, r.output)
        putString(&body, r.errors)
        return frame(kind: kindResponse, body: body)
    }

    // MARK: decoding

    /// The total frame length once the header is complete (validating it), else nil.
    public static func frameLength(_ bytes: [UInt8]) throws(DecodeError) -> Int? {
        if bytes.count >= 4 && Array(bytes[0..<4]) != magic { throw .badMagic }
        guard bytes.count >= headerLength else { return nil }
        let v = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        guard v == version else { throw .unsupportedVersion(v) }
        let n = Int(get32(bytes, 8))
        guard n <= maxBody else { throw .tooLarge(n) }
        return headerLength + n
    }

    static func get32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    struct Reader {
        let b: [UInt8]
        var at: Int
        let end: Int
        mutating func u32() throws(DecodeError) -> UInt32 {
            guard at + 4 <= end else { throw .malformed("field past the end of the message") }
            defer { at += 4 }
            return AdminProtocol.get32(b, at)
        }
        mutating func string() throws(DecodeError) -> String {
            let n = Int(try u32())
            guard n <= end - at else { throw .malformed("string past the end of the message") }
            defer { at += n }
            guard let s = String(validating: b[at..<(at + n)], as: UTF8.self) else {
                throw .malformed("text is not UTF-8")
            }
            return s
        }
    }

    static func body(_ bytes: [UInt8], kind: UInt16) throws(DecodeError) -> Reader {
        guard let total = try frameLength(bytes), bytes.count >= total else { throw .incomplete }
        let k = UInt16(bytes[6]) << 8 | UInt16(bytes[7])
        guard k == kind else { throw .wrongKind(k) }
        return Reader(b: bytes, at: headerLength, end: total)
    }

    public static func decodeRequest(_ bytes: [UInt8]) throws(DecodeError) -> Request {
        var r = try body(bytes, kind: kindRequest)
        let argc = Int(try r.u32())
        guard argc >= 1, argc <= 4096 else { throw .malformed("argument count \(argc)") }
        let program = try r.string()
        var args: [String] = []
        for _ in 1..<argc { args.append(try r.string()) }
        let input = try r.string()
        guard r.at == r.end else { throw .malformed("trailing bytes") }
        return Request(program: program, arguments: args, input: input)
    }

    public static func decodeResponse(_ bytes: [UInt8]) throws(DecodeError) -> Response {
        var r = try body(bytes, kind: kindResponse)
        let status = Int32(bitPattern: try r.u32())
        let out = try r.string()
        let err = try r.string()
        return Response(status: status, output: out, errors: err)
    }
}
