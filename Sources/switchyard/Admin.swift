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

        // Switchyard's own commands (Control/Supervisor.swift, Keepalived.swift).
        if args.first == "--health" {
            return call(path: path, program: program, AdminProtocol.Request(program: program, arguments: args))
        }
        if args.first == "--import-keepalived" {
            return importKeepalived(Array(args.dropFirst()), path: path, program: program)
        }

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
            return call(path: path, program: program,
                        AdminProtocol.Request(program: program, arguments: args, input: input))
        }
    }

    /// One request to the daemon; its output printed, its status returned.
    static func call(path: String, program: String, _ req: AdminProtocol.Request) -> Int32 {
        switch send(path: path, program: program, req) {
        case .success(let r):
            FileHandleOut.stdout(r.output)
            FileHandleOut.stderr(r.errors)
            return r.status
        case .failure(let rc):
            return rc.code
        }
    }

    struct Status: Error { var code: Int32 }

    static func send(path: String, program: String, _ req: AdminProtocol.Request) -> Result<AdminProtocol.Response, Status> {
        do throws(AdminClient.Failure) {
            return .success(try AdminClient.call(path: path, request: req))
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
            return .failure(Status(code: 2))
        }
    }

    /// `--import-keepalived FILE [--dry-run]`: print the `-S -n` rules the
    /// file's virtual_servers make, then (unless --dry-run) send the daemon a
    /// `-R` restore of what its table lacks or has differently (services and
    /// dests are added or edited, nothing is deleted). Health checks are run
    /// only by a daemon started with `--keepalived FILE`.
    static func importKeepalived(_ args: [String], path: String, program: String) -> Int32 {
        var file: String? = nil
        var dryRun = false
        for a in args {
            if a == "--dry-run" { dryRun = true } else if a == "-n" { continue } else if file == nil { file = a } else {
                FileHandleOut.stderr("\(program): --import-keepalived: unexpected argument \(a)\n")
                return 2
            }
        }
        guard let f = file else {
            FileHandleOut.stderr("\(program): --import-keepalived needs a file\n")
            return 2
        }
        let plan: KeepalivedPlan
        do throws(KeepalivedError) {
            plan = try KeepalivedConfig.load(path: f).plan()
        } catch {
            FileHandleOut.stderr("\(program): \(error)\n")
            return 2
        }
        for n in plan.notices { FileHandleOut.stderr("\(program): notice: \(n)\n") }
        let rules = plan.saveText()
        FileHandleOut.stdout(rules)
        if dryRun { return 0 }
        guard case .success(let cur) = send(path: path, program: program,
                                            AdminProtocol.Request(program: program, arguments: ["-S", "-n"])) else { return 2 }
        if cur.status != 0 {
            FileHandleOut.stderr(cur.errors)
            return cur.status
        }
        switch reconcileRules(current: cur.output, desired: rules) {
        case .failure(let e):
            FileHandleOut.stderr("\(program): line \(e.line): \(e.message)\n")
            return 2
        case .success(let diff):
            if diff.isEmpty { return 0 }
            return call(path: path, program: program, AdminProtocol.Request(program: program, arguments: ["-R"], input: diff))
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
