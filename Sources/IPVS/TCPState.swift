// TCP connection states of IPVS (ip_vs_proto_tcp.c): the kernel's state
// numbering, names, the active set, the next-state tables (normal and
// secure_tcp) and per-state timeouts.

/// IPVS TCP states, numbered as IP_VS_TCP_S_* are.
public enum TCPState: UInt8, Sendable, CaseIterable {
    case none = 0
    case established = 1
    case synSent = 2
    case synRecv = 3
    case finWait = 4
    case timeWait = 5
    case close = 6
    case closeWait = 7
    case lastAck = 8
    case listen = 9
    case synAck = 10

    public static let count = 11

    /// The name `ipvsadm -Lc` and /proc/net/ip_vs_conn print.
    public var name: String {
        switch self {
        case .none: return "NONE"
        case .established: return "ESTABLISHED"
        case .synSent: return "SYN_SENT"
        case .synRecv: return "SYN_RECV"
        case .finWait: return "FIN_WAIT"
        case .timeWait: return "TIME_WAIT"
        case .close: return "CLOSE"
        case .closeWait: return "CLOSE_WAIT"
        case .lastAck: return "LAST_ACK"
        case .listen: return "LISTEN"
        case .synAck: return "SYNACK"
        }
    }

    /// Whether a conn in this state counts in activeconns
    /// (ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK).
    @inlinable
    public var isActive: Bool {
        // bits 1, 2, 3 and 10
        return (UInt16(0b100_0000_1110) >> UInt16(rawValue)) & 1 == 1
    }

    /// Default timeout of the state in seconds (tcp_timeouts).
    public var defaultTimeout: UInt32 {
        switch self {
        case .none: return 2
        case .established: return 900
        case .synSent: return 120
        case .synRecv: return 60
        case .finWait: return 120
        case .timeWait: return 120
        case .close: return 10
        case .closeWait: return 60
        case .lastAck: return 30
        case .listen: return 120
        case .synAck: return 120
        }
    }

    /// Timeout of the state with `ipvsadm --set` applied: only ESTABLISHED
    /// (tcp) and FIN_WAIT (tcpfin) follow the settings.
    @inlinable
    public func timeout(_ settings: TimeoutSettings) -> UInt32 {
        switch self {
        case .established: return settings.tcp
        case .finWait: return settings.tcpFin
        default: return defaultTimeout
        }
    }

    /// Timeout of a freshly created connection before its first transition.
    public static let initialTimeout: UInt32 = 3

    /// The state name UDP connections show.
    public static let udpStateName = "UDP"
}

/// Which table a TCP packet is looked up in (IP_VS_DIR_*).
public enum ConnDirection: UInt8, Sendable {
    case input = 0       // client -> director
    case output = 1      // real server -> director (NAT replies)
    case inputOnly = 2   // input of a conn that has seen no output (NOOUTPUT)

    /// The NOOUTPUT rule of set_tcp_state: a conn flagged NOOUTPUT uses the
    /// INPUT_ONLY table for input; its first output packet clears the flag.
    @inlinable
    public static func effective(_ dir: ConnDirection, noOutput: inout Bool) -> ConnDirection {
        guard noOutput else { return dir }
        if dir == .output {
            noOutput = false
            return .output
        }
        return .inputOnly
    }
}

/// TCP header flag bits (byte 13 of the header).
public enum TCPFlagBits {
    public static let fin: UInt8 = 0x01
    public static let syn: UInt8 = 0x02
    public static let rst: UInt8 = 0x04
    public static let ack: UInt8 = 0x10
}

public enum TCPStateMachine {
    /// Row within a direction block: RST first, then SYN, FIN, ACK. `nil`
    /// when none of them is set.
    @inlinable
    public static func flagRow(_ flags: UInt8) -> Int? {
        if flags & TCPFlagBits.rst != 0 { return 3 }
        if flags & TCPFlagBits.syn != 0 { return 0 }
        if flags & TCPFlagBits.fin != 0 { return 1 }
        if flags & TCPFlagBits.ack != 0 { return 2 }
        return nil
    }

    /// The next state. A segment with none of RST/SYN/FIN/ACK moves the conn
    /// to CLOSE, as the kernel does (its "no index" path keeps the CLOSE
    /// default). `direction` must already be the effective one (see
    /// `ConnDirection.effective`).
    @inlinable
    public static func next(state: TCPState, direction: ConnDirection, flags: UInt8,
                            secure: Bool = false) -> TCPState {
        guard let row = flagRow(flags) else { return .close }
        let index = ((Int(direction.rawValue) * 4 + row) * TCPState.count) + Int(state.rawValue)
        let raw = secure ? dosTable[index] : normalTable[index]
        return TCPState(rawValue: raw).unsafelyUnwrapped
    }

    // Columns: NO ES SS SR FW TW CL CW LA LI SA; rows per direction: syn fin ack rst.
    private static let NO: UInt8 = 0, ES: UInt8 = 1, SS: UInt8 = 2, SR: UInt8 = 3, FW: UInt8 = 4
    private static let TW: UInt8 = 5, CL: UInt8 = 6, CW: UInt8 = 7, LA: UInt8 = 8, LI: UInt8 = 9, SA: UInt8 = 10

    @usableFromInline
    static let normalTable: [UInt8] = [
        // INPUT
        SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR,   // syn
        CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW,   // fin
        ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES,   // ack
        CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR,   // rst
        // OUTPUT
        SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR,
        TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW,
        ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES,
        CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL,
        // INPUT_ONLY
        SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR,
        CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW,
        ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES,
        CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL,
    ]

    @usableFromInline
    static let dosTable: [UInt8] = [
        // INPUT
        SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SA,
        CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, SA,
        ES, ES, SS, SR, FW, TW, CL, CW, CL, LI, SA,
        CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL,
        // OUTPUT
        SS, ES, SS, SA, SS, SS, SS, SS, SS, LI, SA,
        TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW,
        ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES,
        CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL,
        // INPUT_ONLY
        SA, ES, ES, SR, SA, SA, SA, SA, SA, SA, SA,
        CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW,
        ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES,
        CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL,
    ]
}
