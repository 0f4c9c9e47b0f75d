// dh: destination hashing (ip_vs_dh.c). 256 buckets filled by cycling
// through the dest list from its head (weights ignored, weight-0 dests
// included). The key is hash_32 of the packet's destination address (IPv6
// folded by XOR of its words). Rebuilt on add and delete only: a weight
// change does not move buckets. No fallback.

public final class DHScheduler: Scheduler {
    public let name = "dh"
    public static let tableBits: UInt32 = 8
    public static let tableSize = 1 << 8
    /// The bucket table (nil entries only when the service has no dests).
    public private(set) var buckets: ContiguousArray<Dest?>

    public init(service: Service) {
        buckets = ContiguousArray(repeating: nil, count: DHScheduler.tableSize)
        reassign(service)
    }

    private func reassign(_ service: Service) {
        let dests = service.dests
        if dests.isEmpty {
            for i in 0..<buckets.count { buckets[i] = nil }
            return
        }
        var j = 0
        for i in 0..<buckets.count {
            buckets[i] = dests[j]
            j += 1
            if j == dests.count { j = 0 }
        }
    }

    public func addDest(_ service: Service, _ dest: Dest) { reassign(service) }
    public func delDest(_ service: Service, _ dest: Dest) { reassign(service) }

    /// The bucket a destination address maps to.
    @inlinable
    public static func bucket(for daddr: IPAddress) -> Int {
        Int(SchedHash.hash32(daddr.folded, bits: tableBits))
    }

    public func schedule(_ service: Service, _ input: ScheduleInput) -> Dest? {
        guard let d = buckets[DHScheduler.bucket(for: input.daddr)] else { return nil }
        if !d.isAvailable || d.weight <= 0 || d.isOverloaded { return nil }
        return d
    }
}
