// The neighbour table shared by all workers: static entries (--neigh) and
// entries learned from ARP and NDP.
//
// Readers (every worker, per packet) never wait: each slot carries a
// sequence number that is odd while the slot is being written, and a reader
// that sees it change simply reads again. Learning is rare and is done by
// whichever worker sees the ARP/NDP message, under a try-lock: a worker that
// finds the lock taken skips learning that message (the sender will answer
// the next probe). Slots are never removed, only overwritten, so a reader can
// never follow a dangling entry. Learned entries are refreshed whenever the
// neighbour speaks ARP/NDP; they do not age out.
import Synchronization
import Wire

public final class NeighbourTable: @unchecked Sendable {
    public enum State: UInt32 {
        case empty = 0
        case permanent = 1   // --neigh
        case reachable = 2   // learned
    }

    static let slotBytes = 64
    // Slot layout: seq u32 @0, state u32 @4, key hi u64 @8, key lo u64 @16,
    // mac u64 @24, updated (µs) u64 @32.
    let capacity: Int
    let slots: UnsafeMutableRawPointer
    let writer = Atomic<Bool>(false)
    /// Bumped on every change; lets workers cache lookups and notice changes.
    public let version = Atomic<UInt64>(0)

    public init(capacity requested: Int = 4096) {
        var c = 64
        while c < requested { c <<= 1 }
        capacity = c
        slots = UnsafeMutableRawPointer.allocate(byteCount: c * NeighbourTable.slotBytes, alignment: 64)
        slots.initializeMemory(as: UInt8.self, repeating: 0, count: c * NeighbourTable.slotBytes)
    }

    /// IPv4 keys use an all-ones high word, which no IPv6 neighbour has.
    @inline(__always)
    static func key(_ a: IPAddress) -> (UInt64, UInt64) { a.isV4 ? (UInt64.max, a.lo) : (a.hi, a.lo) }

    @inline(__always)
    func start(_ k: (UInt64, UInt64)) -> Int {
        var x = k.0 ^ (k.1 &* 0x9E37_79B9_7F4A_7C15)
        x = (x ^ (x >> 29)) &* 0xBF58_476D_1CE4_E5B9
        return Int(truncatingIfNeeded: x ^ (x >> 32)) & (capacity - 1)
    }


    /// The MAC for a next hop, and when it was learned (0 for permanent entries).
    @inline(__always)
    public func lookup(_ a: IPAddress) -> (mac: MACAddress, updated: UInt64, permanent: Bool)? {
        let k = NeighbourTable.key(a)
        var i = start(k)
        for _ in 0..<capacity {
            let s = slots + i * NeighbourTable.slotBytes
            while true {
                let s1 = s.load(as: UInt32.self)
                atomicMemoryFence(ordering: .acquiring)
                if s1 & 1 == 1 { continue }
                let state = s.load(fromByteOffset: 4, as: UInt32.self)
                let hi = s.load(fromByteOffset: 8, as: UInt64.self)
                let lo = s.load(fromByteOffset: 16, as: UInt64.self)
                let mac = s.load(fromByteOffset: 24, as: UInt64.self)
                let upd = s.load(fromByteOffset: 32, as: UInt64.self)
                atomicMemoryFence(ordering: .acquiring)
                if s.load(as: UInt32.self) != s1 { continue }
                if state == State.empty.rawValue { return nil }
                if hi == k.0 && lo == k.1 {
                    return (MACAddress(mac), upd, state == State.permanent.rawValue)
                }
                break
            }
            i = (i + 1) & (capacity - 1)
        }
        return nil
    }

    /// Record a mapping. Permanent entries are not overwritten by learning.
    /// Returns false when another writer held the lock (nothing changed).
    @discardableResult
    public func learn(_ a: IPAddress, _ mac: MACAddress, now: UInt64, permanent: Bool = false) -> Bool {
        guard writer.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { writer.store(false, ordering: .releasing) }
        let k = NeighbourTable.key(a)
        var i = start(k)
        for _ in 0..<capacity {
            let s = slots + i * NeighbourTable.slotBytes
            let state = s.load(fromByteOffset: 4, as: UInt32.self)
            let mine = s.load(fromByteOffset: 8, as: UInt64.self) == k.0 && s.load(fromByteOffset: 16, as: UInt64.self) == k.1
            if state == State.empty.rawValue || mine {
                if mine && state == State.permanent.rawValue && !permanent { return true }
                let q = s.load(as: UInt32.self)
                s.storeBytes(of: q &+ 1, as: UInt32.self)       // odd: writing
                atomicMemoryFence(ordering: .releasing)
                s.storeBytes(of: (permanent ? State.permanent : State.reachable).rawValue, toByteOffset: 4, as: UInt32.self)
                s.storeBytes(of: k.0, toByteOffset: 8, as: UInt64.self)
                s.storeBytes(of: k.1, toByteOffset: 16, as: UInt64.self)
                s.storeBytes(of: mac.value, toByteOffset: 24, as: UInt64.self)
                s.storeBytes(of: now, toByteOffset: 32, as: UInt64.self)
                atomicMemoryFence(ordering: .releasing)
                s.storeBytes(of: q &+ 2, as: UInt32.self)       // even: done
                version.wrappingAdd(1, ordering: .releasing)
                return true
            }
            i = (i + 1) & (capacity - 1)
        }
        return false   // full: keep using what we have
    }

    /// Every entry, for listings and tests.
    public func entries() -> [(IPAddress, MACAddress, Bool)] {
        var out: [(IPAddress, MACAddress, Bool)] = []
        for i in 0..<capacity {
            let s = slots + i * NeighbourTable.slotBytes
            let state = s.load(fromByteOffset: 4, as: UInt32.self)
            guard state != 0 else { continue }
            let hi = s.load(fromByteOffset: 8, as: UInt64.self), lo = s.load(fromByteOffset: 16, as: UInt64.self)
            let a = hi == UInt64.max ? IPAddress(v4: UInt32(truncatingIfNeeded: lo)) : IPAddress(hi: hi, lo: lo, family: .inet6)
            out.append((a, MACAddress(s.load(fromByteOffset: 24, as: UInt64.self)), state == State.permanent.rawValue))
        }
        return out
    }
}

