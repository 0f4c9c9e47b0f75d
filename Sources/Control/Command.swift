// One parsed ipvsadm command line (ipvsadm 1.31 grammar).
//
// `IpvsadmCommand.parse(_:program:names:)` is the entry point: it takes the
// arguments after the program name and returns either a command or the
// error ipvsadm would print (text and exit status).

import IPVS

/// The commands of ipvsadm, named as its `cmdnames` table names them (these
/// names appear in error messages).
public enum IpvsadmCommandKind: String, Sendable, Equatable, CaseIterable {
    case addService = "add-service"        // -A
    case editService = "edit-service"      // -E
    case deleteService = "delete-service"  // -D
    case flush = "flush"                   // -C
    case list = "list"                     // -L, -l (and no arguments at all)
    case addServer = "add-server"          // -a
    case deleteServer = "delete-server"    // -d
    case editServer = "edit-server"        // -e
    case setTimeout = "set"                // --set tcp tcpfin udp
    case startDaemon = "start-daemon"      // --start-daemon master|backup
    case stopDaemon = "stop-daemon"        // --stop-daemon master|backup
    case restore = "restore"               // -R
    case save = "save"                     // -S
    case zero = "zero"                     // -Z
    case help = "help"                     // -h (prints usage, exit 0)
    case version = "version"               // -v

    /// Row index in the command/option compatibility table (nil for -h/-v).
    var tableRow: Int? {
        switch self {
        case .addService: return 0
        case .editService: return 1
        case .deleteService: return 2
        case .flush: return 3
        case .list: return 4
        case .addServer: return 5
        case .deleteServer: return 6
        case .editServer: return 7
        case .setTimeout: return 8
        case .startDaemon: return 9
        case .stopDaemon: return 10
        case .restore: return 11
        case .save: return 12
        case .zero: return 13
        case .help, .version: return nil
        }
    }

    /// Commands that change the table.
    public var modifiesTable: Bool {
        switch self {
        case .addService, .editService, .deleteService, .flush, .addServer, .deleteServer,
             .editServer, .setTimeout, .zero: return true
        default: return false
        }
    }
}

/// The options ipvsadm records with `set_option` (bit i = OPTC_* index i),
/// plus Switchyard's `--json` (bit 40, outside ipvsadm's table).
public struct IpvsadmOptions: OptionSet, Sendable, Hashable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    init(index: Int) { rawValue = 1 << UInt64(index) }

    public static let numeric = IpvsadmOptions(index: 0)
    public static let connection = IpvsadmOptions(index: 1)
    public static let service = IpvsadmOptions(index: 2)
    public static let scheduler = IpvsadmOptions(index: 3)
    public static let persistent = IpvsadmOptions(index: 4)
    public static let netmask = IpvsadmOptions(index: 5)
    public static let server = IpvsadmOptions(index: 6)
    public static let forward = IpvsadmOptions(index: 7)
    public static let weight = IpvsadmOptions(index: 8)
    public static let uThreshold = IpvsadmOptions(index: 9)
    public static let lThreshold = IpvsadmOptions(index: 10)
    public static let mcastInterface = IpvsadmOptions(index: 11)
    public static let timeout = IpvsadmOptions(index: 12)
    public static let daemon = IpvsadmOptions(index: 13)
    public static let stats = IpvsadmOptions(index: 14)
    public static let rate = IpvsadmOptions(index: 15)
    public static let thresholds = IpvsadmOptions(index: 16)
    public static let persistentConn = IpvsadmOptions(index: 17)
    public static let nosort = IpvsadmOptions(index: 18)
    public static let syncid = IpvsadmOptions(index: 19)
    public static let exact = IpvsadmOptions(index: 20)
    public static let onePacket = IpvsadmOptions(index: 21)
    public static let persistenceEngine = IpvsadmOptions(index: 22)
    public static let schedFlags = IpvsadmOptions(index: 23)
    public static let mcastGroup = IpvsadmOptions(index: 24)
    public static let mcastPort = IpvsadmOptions(index: 25)
    public static let mcastTTL = IpvsadmOptions(index: 26)
    public static let syncMaxlen = IpvsadmOptions(index: 27)
    public static let tunInfo = IpvsadmOptions(index: 28)
    public static let tunType = IpvsadmOptions(index: 29)
    public static let tunPort = IpvsadmOptions(index: 30)
    public static let tunNocsum = IpvsadmOptions(index: 31)
    public static let tunCsum = IpvsadmOptions(index: 32)
    public static let tunRemcsum = IpvsadmOptions(index: 33)
    /// Switchyard extension: JSON output for list commands.
    public static let json = IpvsadmOptions(index: 40)

    /// ipvsadm's `optnames` (used in error messages), by bit index.
    static let names: [String] = [
        "numeric", "connection", "service-address", "scheduler", "persistent", "netmask",
        "real-server", "forwarding-method", "weight", "u-threshold", "l-threshold",
        "mcast-interface", "timeout", "daemon", "stats", "rate", "thresholds",
        "persistent-conn", "nosort", "syncid", "exact", "ops", "pe", "sched-flags",
        "mcast-group", "mcast-port", "mcast-ttl", "sync-maxlen", "tun-info", "tun-type",
        "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum",
    ]
    static func name(ofIndex i: Int) -> String { i == 40 ? "json" : names[i] }
}

/// Sync daemon role.
public enum SyncDaemonState: String, Sendable, Equatable {
    case master
    case backup
}

/// `--start-daemon` / `--stop-daemon` parameters. Unset optional values are
/// nil here; the daemon registry fills in the kernel's defaults on start.
public struct SyncDaemonConfig: Sendable, Equatable {
    public var state: SyncDaemonState
    public var mcastInterface: String = "eth0"
    public var syncID: UInt8 = 0
    public var syncMaxlen: UInt16? = nil
    public var mcastGroup: IPAddress? = nil
    public var mcastPort: UInt16? = nil
    public var mcastTTL: UInt8? = nil
    public init(state: SyncDaemonState) { self.state = state }
}

/// A parsed ipvsadm command.
///
/// - `service` is set when a virtual service was named (-t/-u/--sctp-service/-f).
///   For -A/-E it carries every service field, omitted options at their
///   defaults (scheduler wlc, no persistence, mask /32 or /128), so an edit
///   resets what it does not mention, as ipvsadm does.
/// - `dest` is set when -r was given; for -a/-e it carries every dest field
///   with defaults (-g, weight 1, thresholds 0, tunnel ipip), DR/TUN dports
///   already forced to the vport for non-fwmark services.
public struct IpvsadmCommand: Sendable, Equatable {
    public var kind: IpvsadmCommandKind
    /// Every option given (ipvsadm's option bits).
    public var options: IpvsadmOptions = []
    public var service: ServiceSpec? = nil
    public var dest: DestSpec? = nil
    /// `--set` values (0 means unchanged).
    public var timeouts: TimeoutSettings? = nil
    public var daemon: SyncDaemonConfig? = nil

    public init(kind: IpvsadmCommandKind) { self.kind = kind }

    /// The listing format flags the options select.
    public var listFormat: ListFormat {
        var f: ListFormat = []
        if options.contains(.numeric) { f.insert(.numeric) }
        if options.contains(.stats) { f.insert(.stats) }
        if options.contains(.rate) { f.insert(.rate) }
        if options.contains(.thresholds) { f.insert(.thresholds) }
        if options.contains(.persistentConn) { f.insert(.persistentConn) }
        if options.contains(.nosort) { f.insert(.nosort) }
        if options.contains(.exact) { f.insert(.exact) }
        if options.contains(.tunInfo) { f.insert(.tunInfo) }
        if kind == .save { f.insert(.rule) }
        return f
    }
    public var json: Bool { options.contains(.json) }
}

/// ipvsadm's FMT_* flags.
public struct ListFormat: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let numeric = ListFormat(rawValue: 0x0001)
    public static let rule = ListFormat(rawValue: 0x0002)
    public static let stats = ListFormat(rawValue: 0x0004)
    public static let rate = ListFormat(rawValue: 0x0008)
    public static let thresholds = ListFormat(rawValue: 0x0010)
    public static let persistentConn = ListFormat(rawValue: 0x0020)
    public static let nosort = ListFormat(rawValue: 0x0040)
    public static let exact = ListFormat(rawValue: 0x0080)
    public static let tunInfo = ListFormat(rawValue: 0x0100)
}

/// What ipvsadm prints when it refuses a command line, and its exit status.
public struct IpvsadmError: Error, Sendable, Equatable {
    /// The text for stderr, each line ending in "\n".
    public var stderr: String
    /// 2 for `fail()`, 255 for popt errors and the "Try ..." exit.
    public var exitCode: Int32

    public init(stderr: String, exitCode: Int32) { self.stderr = stderr; self.exitCode = exitCode }

    /// `fail(2, msg)`: the message and a newline, exit 2.
    static func fail(_ message: String) -> IpvsadmError {
        IpvsadmError(stderr: message + "\n", exitCode: 2)
    }
    /// `tryhelp_exit(program, -1)`.
    static func tryHelp(_ program: String) -> IpvsadmError {
        IpvsadmError(stderr: "Try `\(program) -h' or '\(program) --help' for more information.\n", exitCode: 255)
    }

    /// The stderr text without its final newline (one line for most errors).
    public var message: String {
        var s = stderr
        if s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
