// Applying a parsed ipvsadm command to a table: process_options' command
// switch, with libipvs's error messages (ipvs_strerror) and exit codes.

import IPVS

/// Sync daemons that `--start-daemon` started (Switchyard keeps the
/// configuration; the kernel's defaults are filled in on start, so
/// `--daemon` lists what the kernel would report).
public final class SyncDaemonRegistry: @unchecked Sendable {
    public private(set) var master: SyncDaemonStatus? = nil
    public private(set) var backup: SyncDaemonStatus? = nil
    public init() {}

    public func start(_ c: SyncDaemonConfig) throws(IPVSError) {
        var s = SyncDaemonStatus(state: c.state, mcastInterface: c.mcastInterface, syncID: c.syncID)
        s.syncMaxlen = c.syncMaxlen ?? 1472
        s.mcastGroup = c.mcastGroup ?? IPAddress(v4: 0xE000_0051)   // 224.0.0.81
        s.mcastPort = c.mcastPort ?? 8848
        s.mcastTTL = c.mcastTTL ?? 1
        switch c.state {
        case .master:
            if master != nil { throw .exists }
            master = s
        case .backup:
            if backup != nil { throw .exists }
            backup = s
        }
    }

    public func stop(_ state: SyncDaemonState) throws(IPVSError) {
        switch state {
        case .master:
            if master == nil { throw .noSuchService }
            master = nil
        case .backup:
            if backup == nil { throw .noSuchService }
            backup = nil
        }
    }

    public var running: [SyncDaemonStatus] { [master, backup].compactMap { $0 } }
}

/// Everything besides the table that executing a command needs.
public struct AdmEnvironment {
    /// The invoked name: `ipvsadm` through a symlink, else `switchyard adm`.
    public var program: String
    /// The connection table size shown in the list header.
    public var tableSize: Int
    public var stats: StatsSource
    /// The current connection entries for `-L -c`.
    public var connections: () -> [ConnectionRow]
    public var names: NameResolver
    public var daemons: SyncDaemonRegistry
    /// The text `-R` reads (standard input); nil reads as empty.
    public var restoreInput: () -> String?

    public init(program: String = "ipvsadm", tableSize: Int = 4096, stats: StatsSource = .zero,
                connections: @escaping () -> [ConnectionRow] = { [] },
                names: NameResolver = .system, daemons: SyncDaemonRegistry = SyncDaemonRegistry(),
                restoreInput: @escaping () -> String? = { nil }) {
        self.program = program; self.tableSize = tableSize; self.stats = stats
        self.connections = connections; self.names = names; self.daemons = daemons
        self.restoreInput = restoreInput
    }
}

/// libipvs's ipvs_strerror for one command (which library call failed
/// decides the wording of ESRCH, EEXIST and ENOENT).
public func ipvsErrorMessage(_ error: IPVSError, command: IpvsadmCommandKind) -> String {
    switch error {
    case .exists:
        switch command {
        case .addService: return "Service already exists"
        case .addServer: return "Destination already exists"
        case .startDaemon: return "Daemon has already run"
        default: return "File exists"
        }
    case .noSuchService:
        switch command {
        case .editService, .deleteService, .zero, .list, .save: return "No such service"
        case .addServer, .editServer, .deleteServer: return "Service not defined"
        case .stopDaemon: return "No daemon is running"
        default: return "No such process"
        }
    case .noSuchDest, .notFound:
        switch command {
        case .addService, .editService: return "Scheduler or persistence engine not found"
        case .editServer, .deleteServer: return "No such destination"
        default: return "No such file or directory"
        }
    case .permission: return "Permission denied (you must be root)"
    case .invalid: return "Invalid operation.  Possibly wrong module version, address not unicast, ..."
    case .noMemory: return "Memory allocation problem"
    case .notSupported: return "Operation not supported with IPv6"
    case .familyNotSupported: return "Operation not supported with specified address family"
    case .range: return "Numerical result out of range"
    case .fault: return "Bad address"
    }
}

/// Run one command against the table. Output goes to `output` (stdout) and
/// `errors` (stderr); the result is the process exit status: 0, 2 for
/// refused arguments, 255 when the table refused the operation, 1 when a
/// listed service does not exist.
@discardableResult
public func execute(_ cmd: IpvsadmCommand, on table: IPVSAdministrable,
                    environment env: AdmEnvironment = AdmEnvironment(),
                    output: inout String, errors: inout String) -> Int32 {
    let format = cmd.listFormat
    func fail(_ e: IPVSError) -> Int32 {
        errors += ipvsErrorMessage(e, command: cmd.kind) + "\n"
        return 255
    }
    // Commands built by hand rather than parsed may lack what parsing
    // guarantees; refuse them the way generic_opt_check would.
    let needsService: Set<IpvsadmCommandKind> = [.addService, .editService, .deleteService,
                                                 .addServer, .editServer, .deleteServer]
    if needsService.contains(cmd.kind) && cmd.service == nil {
        errors += "You need to supply the 'service-address' option for the '\(cmd.kind.rawValue)' command\n"
        return 2
    }
    if [.addServer, .editServer, .deleteServer].contains(cmd.kind) && cmd.dest == nil {
        errors += "You need to supply the 'real-server' option for the '\(cmd.kind.rawValue)' command\n"
        return 2
    }
    if (cmd.kind == .startDaemon || cmd.kind == .stopDaemon) && cmd.daemon == nil {
        errors += "illegal start-daemon parameter specified\n"
        return 2
    }
    do throws(IPVSError) {
        switch cmd.kind {
        case .help:
            output += usageText(program: env.program)
        case .version:
            output += versionText()
        case .list:
            if cmd.options.contains(.connection) {
                let rows = env.connections()
                output += cmd.json ? AdmJSON.connections(rows) : IpvsadmFormat.connections(rows, format: format, names: env.names)
            } else if cmd.options.contains(.service), let key = cmd.service?.key {
                guard let s = table.service(for: key) else {
                    errors += ipvsErrorMessage(.noSuchService, command: .list) + "\n"
                    return 1
                }
                output += cmd.json
                    ? AdmJSON.services([s], size: env.tableSize, stats: env.stats,
                                       sorted: !format.contains(.nosort))
                    : IpvsadmFormat.listService(s, format: format, stats: env.stats, names: env.names)
            } else if cmd.options.contains(.timeout) {
                output += cmd.json ? AdmJSON.timeouts(table.timeouts) : IpvsadmFormat.timeouts(table.timeouts)
            } else if cmd.options.contains(.daemon) {
                output += cmd.json ? AdmJSON.daemons(env.daemons.running) : IpvsadmFormat.daemons(env.daemons.running)
            } else {
                output += cmd.json
                    ? AdmJSON.services(table.services, size: env.tableSize, stats: env.stats,
                                       sorted: !format.contains(.nosort))
                    : IpvsadmFormat.listAll(table.services, format: format, size: env.tableSize,
                                            stats: env.stats, names: env.names)
            }
        case .save:
            output += IpvsadmFormat.save(table.services, numeric: format.contains(.numeric), names: env.names)
        case .restore:
            return restore(env.restoreInput() ?? "", on: table, environment: env, output: &output, errors: &errors)
        case .flush:
            try table.flush()
        case .addService:
            try table.addService(cmd.service!)
        case .editService:
            try table.editService(cmd.service!)
        case .deleteService:
            try table.deleteService(cmd.service!.key)
        case .zero:
            try table.zero(cmd.service?.key)
        case .addServer:
            try table.addDest(to: cmd.service!.key, cmd.dest!)
        case .editServer:
            try table.editDest(in: cmd.service!.key, cmd.dest!)
        case .deleteServer:
            try table.deleteDest(from: cmd.service!.key, addr: cmd.dest!.addr, port: cmd.dest!.port)
        case .setTimeout:
            let t = cmd.timeouts ?? TimeoutSettings(tcp: 0, tcpFin: 0, udp: 0)
            try table.setTimeouts(tcp: Int(t.tcp), tcpfin: Int(t.tcpFin), udp: Int(t.udp))
        case .startDaemon:
            try env.daemons.start(cmd.daemon!)
        case .stopDaemon:
            try env.daemons.stop(cmd.daemon!.state)
        }
    } catch {
        return fail(error)
    }
    return 0
}

/// Parse and run one argument list, the way `ipvsadm ARGS` runs.
@discardableResult
public func runIpvsadm(_ args: [String], on table: IPVSAdministrable,
                       environment env: AdmEnvironment = AdmEnvironment(),
                       output: inout String, errors: inout String) -> Int32 {
    switch IpvsadmCommand.parse(args, program: env.program, names: env.names) {
    case .failure(let e):
        errors += e.stderr
        return e.exitCode
    case .success(let cmd):
        return execute(cmd, on: table, environment: env, output: &output, errors: &errors)
    }
}

/// `-R`: the whole input is parsed first (a bad line refuses all of it,
/// naming the line); then every command runs in order. As in ipvsadm, a
/// table error is printed and the next line still runs; the status is
/// that of the last command.
public func restore(_ text: String, on table: IPVSAdministrable, environment env: AdmEnvironment,
                    output: inout String, errors: inout String) -> Int32 {
    switch parseRules(text, program: env.program, names: env.names) {
    case .failure(let e):
        errors += "line \(e.line): \(e.message)\n"
        return e.exitCode
    case .success(let cmds):
        var rc: Int32 = 0
        for c in cmds { rc = execute(c, on: table, environment: env, output: &output, errors: &errors) }
        return rc
    }
}
