// The service table and the operations ipvsadm performs on it, with the
// kernel's error semantics (ip_vs_ctl.c). This is the API Control drives.

/// What `-A`/`-E` carries.
public struct ServiceSpec: Sendable, Equatable {
    public var key: ServiceKey
    public var scheduler: String = "wlc"
    public var flags: ServiceFlags = []          // persistent, onePacket, sched1..3
    public var timeout: UInt32 = 0               // persistence timeout, seconds
    public var netmask: UInt32? = nil            // nil: family default
    public var persistenceEngine: String? = nil
    public init(key: ServiceKey) { self.key = key }
}

/// What `-a`/`-e` carries.
public struct DestSpec: Sendable, Equatable {
    public var addr: IPAddress
    public var port: UInt16
    public var forward: ForwardMethod = .droute
    public var weight: Int32 = 1
    public var upperThreshold: UInt32 = 0
    public var lowerThreshold: UInt32 = 0
    public var tunnelType: TunnelType = .ipip
    public var tunnelPort: UInt16 = 0
    public var tunnelFlags: TunnelFlags = []
    public init(addr: IPAddress, port: UInt16) { self.addr = addr; self.port = port }
}

/// Kernel errors, with the errno ipvsadm's libipvs maps to its message.
public enum IPVSError: Error, Equatable, Sendable {
    case exists            // EEXIST
    case noSuchService     // ESRCH
    case noSuchDest        // ENOENT (edit/del dest)
    case notFound          // ENOENT (scheduler or persistence engine)
    case invalid           // EINVAL
    case range             // ERANGE
    case noMemory          // ENOMEM
    case notSupported      // EOPNOTSUPP
    case familyNotSupported // EAFNOSUPPORT
    case permission        // EPERM
    case fault             // EFAULT (invalid protocol)
}

/// Per-state timeouts that `--set tcp tcpfin udp` changes (seconds).
public struct TimeoutSettings: Sendable, Equatable {
    public var tcp: UInt32 = 900
    public var tcpFin: UInt32 = 120
    public var udp: UInt32 = 300
    public init() {}
    public init(tcp: UInt32, tcpFin: UInt32, udp: UInt32) { self.tcp = tcp; self.tcpFin = tcpFin; self.udp = udp }
}
