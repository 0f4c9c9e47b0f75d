// sh: source hashing (ip_vs_sh.c). 256 buckets; walking the buckets and
// cycling through the dest list, each dest fills `weight` consecutive
// buckets (a weight-0 dest still takes one). Rebuilt on add, delete and
// update. Key: (offset + hash_32(port + fold(saddr), 8)) & 255 with port = the
// client source port under sh-port (SCHED2, TCP/UDP/SCTP only), else 0.
// Unavailable = weight <= 0 or OVERLOAD (the AVAILABLE flag is not looked
// at). sh-fallback (SCHED1) probes other buckets starting from the hash.

public final class SHScheduler: Scheduler {
    public let name = "sh"
    public static let tableBits: UInt32 = 8
    public static let tableSize = 1 << 8
    public private(set) var buckets: ContiguousArray<Dest?>

    public init(service: Service) {
        buckets = ContiguousArray(repeating: nil, count: SHScheduler.tableSize)
        reassign(service)
    }

    private func reassign(_ service: Service) {
        let dests = service.dests
        if dests.isEmpty {
            for i in 0..<buckets.count { buckets[i] = nil }
            return
        }
        var j = 0
        var count: Int32 = 0
        for i in 0..<buckets.count {
            let d = dests[j]
            buckets[i] = d
            count += 1
            if count >= d.weight {
                j += 1
                if j == dests.count { j = 0 }
                count = 0
            }
        }
    }

    public func addDest(_ service: Service, _ dest: Dest) { reassign(service) }
    public func delDest(_ service: Service, _ dest: Dest) { reassign(service) }
    public func updDest(_ service: Service, _ dest: Dest) { reassign(service) }

    /// `ip_vs_sh_hashkey`: bucket for a client address, port and probe offset.
    @inlinable
    public static func hashKey(_ saddr: IPAddress, port: UInt16, offset: UInt32) -> Int {
        let h = SchedHash.hash32(UInt32(port) &+ saddr.folded, bits: tableBits)
        return Int((offset &+ h) & UInt32(tableSize - 1))
    }

    /// The port the hash uses: the client's source port with sh-port.
    @inline(__always)
    static func hashPort(_ service: Service, _ input: ScheduleInput) -> UInt16 {
        guard service.flags.contains(.sched2) else { return 0 }
        switch input.proto {
        case .tcp, .udp, .sctp: return input.sport
        case .ip: return 0
        }
    }

    @inline(__always)
    private static func unavailable(_ d: Dest) -> Bool { d.weight <= 0 || d.isOverloaded }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        let port = SHScheduler.hashPort(service, input)
        let ihash = SHScheduler.hashKey(input.saddr, port: port, offset: 0)
        guard let first = buckets[ihash] else { return nil }
        if !SHScheduler.unavailable(first) { return first }
        guard service.flags.contains(.sched1) else { return nil }
        for offset in 0..<SHScheduler.tableSize {
            let roffset = UInt32((offset + ihash) % SHScheduler.tableSize)
            let h = SHScheduler.hashKey(input.saddr, port: port, offset: roffset)
            guard let d = buckets[h] else { return nil }
            if !SHScheduler.unavailable(d) { return d }
        }
        return nil
    }
}
