// A popt-style option scanner for the ipvsadm option table: short options
// cluster (`-Lnc`), a short option's argument may follow it in the same word
// (`-w5`, `-w=5`) or be the next word; long options take `--opt=v` or
// `--opt v`; an optional argument (-p) is taken from the next word only when
// that word does not start with '-'. Words that are not options are kept as
// leftover arguments (in order), and `--` makes every later word one.
// Options are produced one at a time so that errors surface in the same
// order as with popt.

enum OptionTag: Sendable, Equatable {
    // commands
    case addService, editService, deleteService, clear, list, zero
    case addServer, editServer, deleteServer, set, help, version, restore, save
    case startDaemon, stopDaemon
    // options
    case tcpService, udpService, sctpService, fwmarkService
    case scheduler, persistent, netmask, realServer
    case masquerading, ipip, gatewaying, weight, uThreshold, lThreshold
    case numeric, connection, mcastInterface, syncid, timeout, daemon
    case stats, rate, thresholds, persistentConn, nosort, sort, exact, ipv6, ops
    case pe, schedFlags, mcastGroup, mcastPort, mcastTTL, syncMaxlen
    case tunInfo, tunType, tunPort, tunNocsum, tunCsum, tunRemcsum
    case json
}

enum ArgKind { case none, required, optional }

struct OptionSpec {
    let long: String
    let short: Character?
    let arg: ArgKind
    let tag: OptionTag
}

/// ipvsadm 1.31's popt table, plus `--json`.
let ipvsadmOptionTable: [OptionSpec] = [
    OptionSpec(long: "add-service", short: "A", arg: .none, tag: .addService),
    OptionSpec(long: "edit-service", short: "E", arg: .none, tag: .editService),
    OptionSpec(long: "delete-service", short: "D", arg: .none, tag: .deleteService),
    OptionSpec(long: "clear", short: "C", arg: .none, tag: .clear),
    OptionSpec(long: "list", short: "L", arg: .none, tag: .list),
    OptionSpec(long: "list", short: "l", arg: .none, tag: .list),
    OptionSpec(long: "zero", short: "Z", arg: .none, tag: .zero),
    OptionSpec(long: "add-server", short: "a", arg: .none, tag: .addServer),
    OptionSpec(long: "edit-server", short: "e", arg: .none, tag: .editServer),
    OptionSpec(long: "delete-server", short: "d", arg: .none, tag: .deleteServer),
    OptionSpec(long: "set", short: nil, arg: .none, tag: .set),
    OptionSpec(long: "help", short: "h", arg: .none, tag: .help),
    OptionSpec(long: "version", short: "v", arg: .none, tag: .version),
    OptionSpec(long: "restore", short: "R", arg: .none, tag: .restore),
    OptionSpec(long: "save", short: "S", arg: .none, tag: .save),
    OptionSpec(long: "start-daemon", short: nil, arg: .required, tag: .startDaemon),
    OptionSpec(long: "stop-daemon", short: nil, arg: .required, tag: .stopDaemon),
    OptionSpec(long: "tcp-service", short: "t", arg: .required, tag: .tcpService),
    OptionSpec(long: "udp-service", short: "u", arg: .required, tag: .udpService),
    OptionSpec(long: "sctp-service", short: nil, arg: .required, tag: .sctpService),
    OptionSpec(long: "fwmark-service", short: "f", arg: .required, tag: .fwmarkService),
    OptionSpec(long: "scheduler", short: "s", arg: .required, tag: .scheduler),
    OptionSpec(long: "persistent", short: "p", arg: .optional, tag: .persistent),
    OptionSpec(long: "netmask", short: "M", arg: .required, tag: .netmask),
    OptionSpec(long: "real-server", short: "r", arg: .required, tag: .realServer),
    OptionSpec(long: "masquerading", short: "m", arg: .none, tag: .masquerading),
    OptionSpec(long: "ipip", short: "i", arg: .none, tag: .ipip),
    OptionSpec(long: "gatewaying", short: "g", arg: .none, tag: .gatewaying),
    OptionSpec(long: "weight", short: "w", arg: .required, tag: .weight),
    OptionSpec(long: "u-threshold", short: "x", arg: .required, tag: .uThreshold),
    OptionSpec(long: "l-threshold", short: "y", arg: .required, tag: .lThreshold),
    OptionSpec(long: "numeric", short: "n", arg: .none, tag: .numeric),
    OptionSpec(long: "connection", short: "c", arg: .none, tag: .connection),
    OptionSpec(long: "mcast-interface", short: nil, arg: .required, tag: .mcastInterface),
    OptionSpec(long: "syncid", short: nil, arg: .required, tag: .syncid),
    OptionSpec(long: "timeout", short: nil, arg: .none, tag: .timeout),
    OptionSpec(long: "daemon", short: nil, arg: .none, tag: .daemon),
    OptionSpec(long: "stats", short: nil, arg: .none, tag: .stats),
    OptionSpec(long: "rate", short: nil, arg: .none, tag: .rate),
    OptionSpec(long: "thresholds", short: nil, arg: .none, tag: .thresholds),
    OptionSpec(long: "persistent-conn", short: nil, arg: .none, tag: .persistentConn),
    OptionSpec(long: "nosort", short: nil, arg: .none, tag: .nosort),
    OptionSpec(long: "sort", short: nil, arg: .none, tag: .sort),
    OptionSpec(long: "exact", short: "X", arg: .none, tag: .exact),
    OptionSpec(long: "ipv6", short: "6", arg: .none, tag: .ipv6),
    OptionSpec(long: "ops", short: "o", arg: .none, tag: .ops),
    OptionSpec(long: "pe", short: nil, arg: .required, tag: .pe),
    OptionSpec(long: "sched-flags", short: "b", arg: .required, tag: .schedFlags),
    OptionSpec(long: "mcast-group", short: nil, arg: .required, tag: .mcastGroup),
    OptionSpec(long: "mcast-port", short: nil, arg: .required, tag: .mcastPort),
    OptionSpec(long: "mcast-ttl", short: nil, arg: .required, tag: .mcastTTL),
    OptionSpec(long: "sync-maxlen", short: nil, arg: .required, tag: .syncMaxlen),
    OptionSpec(long: "tun-info", short: nil, arg: .none, tag: .tunInfo),
    OptionSpec(long: "tun-type", short: nil, arg: .required, tag: .tunType),
    OptionSpec(long: "tun-port", short: nil, arg: .required, tag: .tunPort),
    OptionSpec(long: "tun-nocsum", short: nil, arg: .none, tag: .tunNocsum),
    OptionSpec(long: "tun-csum", short: nil, arg: .none, tag: .tunCsum),
    OptionSpec(long: "tun-remcsum", short: nil, arg: .none, tag: .tunRemcsum),
    OptionSpec(long: "json", short: nil, arg: .none, tag: .json),
]

/// popt's error kinds and their poptStrerror texts.
enum ScanError: Equatable {
    case unknownOption      // POPT_ERROR_BADOPT
    case missingArgument    // POPT_ERROR_NOARG
    case unwantedArgument   // POPT_ERROR_UNWANTEDARG

    var text: String {
        switch self {
        case .unknownOption: return "unknown option"
        case .missingArgument: return "missing argument"
        case .unwantedArgument: return "option does not take an argument"
        }
    }
}

enum ScanEvent: Equatable {
    /// An option, its argument, and the word it came from (poptBadOption).
    case option(OptionTag, String?, word: String)
    case error(ScanError, word: String)
}

struct OptionScanner {
    private let args: [String]
    private var next = 0
    /// Remaining characters of the short-option cluster being read.
    private var cluster: Substring? = nil
    private var clusterWord = ""
    private var restAreArgs = false
    private(set) var leftovers: [String] = []

    init(_ args: [String]) { self.args = args }

    /// The next option, nil at the end of the arguments.
    mutating func nextOption() -> ScanEvent? {
        if var c = cluster, !c.isEmpty {
            let ch = c.removeFirst()
            cluster = c
            return shortOption(ch)
        }
        cluster = nil
        while next < args.count {
            let w = args[next]
            next += 1
            if restAreArgs || w == "-" || !w.hasPrefix("-") {
                leftovers.append(w)
                continue
            }
            if w == "--" {
                restAreArgs = true
                continue
            }
            if w.hasPrefix("--") {
                var body = w.dropFirst(2)
                var inlineArg: String? = nil
                if let eq = body.firstIndex(of: "=") {
                    inlineArg = String(body[body.index(after: eq)...])
                    body = body[..<eq]
                }
                guard let spec = ipvsadmOptionTable.first(where: { $0.long == body }) else {
                    return .error(.unknownOption, word: w)
                }
                switch spec.arg {
                case .none:
                    if inlineArg != nil { return .error(.unwantedArgument, word: w) }
                    return .option(spec.tag, nil, word: w)
                case .required:
                    if let a = inlineArg { return .option(spec.tag, a, word: w) }
                    guard next < args.count else { return .error(.missingArgument, word: w) }
                    next += 1
                    return .option(spec.tag, args[next - 1], word: args[next - 1])
                case .optional:
                    if let a = inlineArg { return .option(spec.tag, a, word: w) }
                    if next < args.count && !args[next].hasPrefix("-") {
                        next += 1
                        return .option(spec.tag, args[next - 1], word: args[next - 1])
                    }
                    return .option(spec.tag, nil, word: w)
                }
            }
            // a short-option cluster
            var c = w.dropFirst()
            clusterWord = w
            let ch = c.removeFirst()
            cluster = c
            return shortOption(ch)
        }
        return nil
    }

    private mutating func shortOption(_ ch: Character) -> ScanEvent {
        let word = clusterWord
        guard let spec = ipvsadmOptionTable.first(where: { $0.short == ch }) else {
            cluster = nil
            return .error(.unknownOption, word: word)
        }
        if spec.arg == .none { return .option(spec.tag, nil, word: word) }
        // The rest of the cluster (after an optional '=') is the argument.
        if var rest = cluster, !rest.isEmpty {
            if rest.first == "=" { rest.removeFirst() }
            cluster = nil
            return .option(spec.tag, String(rest), word: word)
        }
        cluster = nil
        if spec.arg == .required {
            guard next < args.count else { return .error(.missingArgument, word: word) }
            next += 1
            return .option(spec.tag, args[next - 1], word: args[next - 1])
        }
        if next < args.count && !args[next].hasPrefix("-") {
            next += 1
            return .option(spec.tag, args[next - 1], word: args[next - 1])
        }
        return .option(spec.tag, nil, word: word)
    }
}
