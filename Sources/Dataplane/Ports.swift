// Port and packet-pool set-up, and port statistics, over the C shim.
import CDPDK
import Wire

public struct PortDescription: Sendable {
    public var id: UInt16
    public var driver: String
    public var name: String
    public var mac: MACAddress
    public var maxRxQueues: Int
    public var maxTxQueues: Int
    public var timestampCapable: Bool
}

public struct PortStats: Sendable {
    public var rxPackets: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txBytes: UInt64 = 0
    /// Packets the port could not deliver or send: imissed + ierrors + rx_nombuf + oerrors.
    public var portDrops: UInt64 = 0
}

public enum Ports {
    public static func available() -> [UInt16] {
        (0..<UInt16(RTE_MAX_ETHPORTS)).filter { sy_port_is_valid($0) }
    }

    public static func describe(_ port: UInt16) -> PortDescription? {
        var info = sy_port_info()
        guard sy_port_info(port, &info) == 0 else { return nil }
        let driver = withUnsafeBytes(of: &info.driver) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let name = withUnsafeBytes(of: &info.name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        return PortDescription(id: port, driver: driver, name: name, mac: MACAddress(info.mac.0, info.mac.1, info.mac.2, info.mac.3, info.mac.4, info.mac.5),
                               maxRxQueues: Int(info.max_rx_queues), maxTxQueues: Int(info.max_tx_queues),
                               timestampCapable: info.rx_timestamp_capable)
    }

    public static func stats(_ port: UInt16) -> PortStats {
        var s = sy_port_stats()
        guard sy_port_stats(port, &s) == 0 else { return PortStats() }
        return PortStats(rxPackets: s.ipackets, txPackets: s.opackets, rxBytes: s.ibytes, txBytes: s.obytes,
                         portDrops: s.imissed &+ s.ierrors &+ s.rx_nombuf &+ s.oerrors)
    }
}

public struct DataplaneError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
