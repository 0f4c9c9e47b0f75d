// `switchyard adm` (and the binary invoked as `ipvsadm`): ipvsadm's command
// line, executed by the running switchyard over its admin socket.
import Control
import Dataplane
import IPVS
#if canImport(Glibc)
import Glibc
#endif

enum Admin {
    static func main(_ argv: [String], program: String) -> Int32 {
        // Our own option, not ipvsadm's: where the daemon listens.
        var args: [String] = []
        var socketPath: String? = nil
        var i = 0
        while i < argv.count {
            if argv[i] == "--socket", i + 1 < argv.count {
                socketPath = argv[i + 1]
                i += 2
                continue
            }
            if argv[i].hasPrefix("--socket=") {
                socketPath = String(argv[i].dropFirst("--socket=".count))
                i += 1
                continue
            }
            args.append(argv[i])
            i += 1
        }
        let env = getenv("SWITCHYARD_SOCKET").map { String(cString: $0) }
        let path = socketPath ?? env ?? AdminServer.defaultPath(filePrefix: nil)

        // Usage errors, help and version are answered here, as ipvsadm answers
        // them without asking the kernel for anything.
        var out = "", err = ""
        switch IpvsadmCommand.parse(args, program: program) {
        case .failure(let e):
            FileHandleOut.stderr(e.stderr)
            return e.exitCode
        case .success(let cmd):
            if cmd.kind == .help || cmd.kind == .version {
                let rc = execute(cmd, on: IPVSTable(), environment: AdmEnvironment(program: program),
                                 output: &out, errors: &err)
                FileHandleOut.stdout(out)
                FileHandleOut.stderr(err)
                return rc
            }
            var input = ""
            if cmd.kind == .restore { input = readStandardInput() }
            do {
                let r = try AdminClient.call(path: path, request: AdminProtocol.Request(
                    program: program, arguments: args, input: input))
                FileHandleOut.stdout(r.output)
                FileHandleOut.stderr(r.errors)
                return r.status
            } catch {
                switch error {
                case .connect(_, let e) where e == EACCES || e == EPERM:
                    FileHandleOut.stderr("Can't initialize ipvs: Permission denied (you must be root)\n")
                case .connect(let m, _):
                    FileHandleOut.stderr("Can't initialize ipvs: cannot reach switchyard at \(path): \(m)\n"
                                         + "Is switchyard running? (set --socket PATH or SWITCHYARD_SOCKET)\n")
                case .io(let m), .protocolError(let m):
                    FileHandleOut.stderr("\(program): \(m)\n")
                }
                return 2
            }
        }
    }

    static func readStandardInput() -> String {
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
