// LVS/TUN encapsulation kinds, shared by the IPVS model and the encapsulation code.

public enum TunnelType: UInt8, Sendable {
    case ipip = 0
    case gue = 1
    case gre = 2
}

/// `--tun-nocsum | --tun-csum | --tun-remcsum` (kernel IP_VS_TUNNEL_ENCAP_FLAG_*).
public struct TunnelFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let csum = TunnelFlags(rawValue: 1 << 0)
    public static let remcsum = TunnelFlags(rawValue: 1 << 1)
}
