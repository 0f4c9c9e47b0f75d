// A worker's connection table: single writer, no locks, no allocation after
// set-up.
//
// Entries live in a fixed pool (64 bytes for IPv4 — one cache line — and 128
// for IPv6) and are found through a bucketed hash index. The key is the
// client endpoint <protocol, client address, client port>, as in the kernel:
// a client's packets (looked up by source) and a real server's NAT replies
// (looked up by destination) hash alike, and so does the RSS owner of the
// connection. The full tuple is compared in the entry.
//
// Expiry uses a timer wheel of 1 ms ticks. Packets only move an entry's
// `expires` later (a field write in a line already in cache); the wheel
// re-files an entry when its old slot comes round and it is not yet due.
// An entry whose expiry moves earlier than its slot is re-filed at once.

import CIntrinsics

public enum ConnField {
    // Byte offsets inside an entry.
    public static let next = 0          // u32 wheel link (index + 1, 0 = none)
    public static let prev = 4          // u32
    public static let expires = 8       // u64, microseconds on the data plane's clock
    public static let destID = 16       // u32
    public static let control = 20      // u32: controlling template's index + 1, 0 = none
    public static let nControl = 24     // u32: connections this template controls
    public static let timeout = 28      // u32 ms: the current state's timeout
    public static let flags = 32        // u16 ConnFlags
    public static let proto = 34        // u8
    public static let state = 35        // u8
    public static let cport = 36        // u16 host order
    public static let vport = 38        // u16
    public static let dport = 40        // u16
    public static let wheelSlot = 42    // u16
    public static let hash = 44         // u32
    public static let serviceID = 48    // u32
    public static let addresses = 52    // caddr, vaddr, daddr: 4 bytes each (IPv4) or 16 (IPv6)
}

/// Connection flag bits (u16 in the entry). The low three bits are the
/// forwarding method, as in the kernel's conn_flags.
public struct ConnFlags {
    public static let fwdMask: UInt16 = 0x0007
    public static let inactive: UInt16 = 0x0010
    public static let noOutput: UInt16 = 0x0020
    public static let template: UInt16 = 0x0040
    public static let onePacket: UInt16 = 0x0080
    /// Unhashed, waiting for the wheel to free it (expire-now on reuse).
    public static let dying: UInt16 = 0x0100
    public static let assured: UInt16 = 0x0200
    /// Template made unmatchable because its dest became invalid.
    public static let invalidated: UInt16 = 0x0400
    public static let inUse: UInt16 = 0x8000
}

public struct ConnTable {
    public let isV6: Bool
    public let stride: Int
    public let capacity: Int
    let entries: UnsafeMutableRawPointer
    let buckets: UnsafeMutableRawPointer
    let entryMemory: TableMemory
    let bucketMemory: TableMemory
    let bucketMask: Int
    let freeStack: UnsafeMutablePointer<UInt32>
    var freeCount: Int
    // Timer wheel
    static let wheelBits = 16
    static let wheelSize = 1 << wheelBits
    static let tickMicros: UInt64 = 1000
    let wheel: UnsafeMutablePointer<UInt32>   // list head per slot: index + 1, 0 = empty
    let slotMin: UnsafeMutablePointer<UInt64> // lower bound of the expiries filed in each slot
    /// The last tick whose slot has been processed.
    public private(set) var processedTick: UInt64 = 0
    var wheelStarted = false
    let seed: UInt64

    public var count: Int { capacity - freeCount }

    static let slotsPerBucket = 7
    static let bucketBytes = 64

    public init(capacity requested: Int, isV6: Bool, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) {
        self.isV6 = isV6
        stride = isV6 ? 128 : 64
        capacity = max(requested, 16)
        // Fresh anonymous memory (see TableMemory): an entry is written whole
        // when it is handed out, so the pool's pages are touched only as the
        // table fills; the index starts zeroed, as mappings are.
        var nb = 8
        while nb * 5 < capacity { nb <<= 1 }   // load factor at most 5/7 of slots
        bucketMask = nb - 1
        guard let e = TableMemory.map(bytes: capacity * stride),
              let b = TableMemory.map(bytes: nb * ConnTable.bucketBytes) else {
            fatalError("connection table: cannot map \(capacity * stride + nb * ConnTable.bucketBytes) bytes")
        }
        entryMemory = e
        bucketMemory = b
        entries = e.start
        precondition(UInt(bitPattern: entries) % 64 == 0, "connection entries must be 64-byte aligned")   // FastBurst packs a kind into the low bits
        buckets = b.start
        freeStack = .allocate(capacity: capacity)
        for i in 0..<capacity { freeStack[i] = UInt32(capacity - 1 - i) }
        freeCount = capacity
        wheel = .allocate(capacity: ConnTable.wheelSize)
        wheel.initialize(repeating: 0, count: ConnTable.wheelSize)
        slotMin = .allocate(capacity: ConnTable.wheelSize)
        slotMin.initialize(repeating: UInt64.max, count: ConnTable.wheelSize)
        self.seed = seed
    }

    public func deallocate() {
        entryMemory.unmap()
        bucketMemory.unmap()
        freeStack.deallocate()
        wheel.deallocate()
        slotMin.deallocate()
    }

    /// Bytes of memory per connection slot: the entry, its share of the index and free list.
    public var bytesPerConnection: Double {
        Double(stride) + Double((bucketMask + 1) * ConnTable.bucketBytes) / Double(capacity) + 4
    }

    // MARK: entry access

    @inline(__always) public func entry(_ i: UInt32) -> UnsafeMutableRawPointer { entries + Int(i) * stride }

    @inline(__always) public func u8(_ i: UInt32, _ off: Int) -> UInt8 { entry(i).load(fromByteOffset: off, as: UInt8.self) }
    @inline(__always) public func u16(_ i: UInt32, _ off: Int) -> UInt16 { entry(i).load(fromByteOffset: off, as: UInt16.self) }
    @inline(__always) public func u32(_ i: UInt32, _ off: Int) -> UInt32 { entry(i).load(fromByteOffset: off, as: UInt32.self) }
    @inline(__always) public func u64(_ i: UInt32, _ off: Int) -> UInt64 { entry(i).load(fromByteOffset: off, as: UInt64.self) }
    @inline(__always) public func set8(_ i: UInt32, _ off: Int, _ v: UInt8) { entry(i).storeBytes(of: v, toByteOffset: off, as: UInt8.self) }
    @inline(__always) public func set16(_ i: UInt32, _ off: Int, _ v: UInt16) { entry(i).storeBytes(of: v, toByteOffset: off, as: UInt16.self) }
    @inline(__always) public func set32(_ i: UInt32, _ off: Int, _ v: UInt32) { entry(i).storeBytes(of: v, toByteOffset: off, as: UInt32.self) }
    @inline(__always) public func set64(_ i: UInt32, _ off: Int, _ v: UInt64) { entry(i).storeBytes(of: v, toByteOffset: off, as: UInt64.self) }

    @inline(__always) public func flags(_ i: UInt32) -> UInt16 { u16(i, ConnField.flags) }
    @inline(__always) public func setFlags(_ i: UInt32, _ f: UInt16) { set16(i, ConnField.flags, f) }

    @inline(__always) var addrSize: Int { isV6 ? 16 : 4 }

    /// Address k of entry i: 0 client, 1 virtual, 2 destination (real server).
    @inline(__always)
    public func address(_ i: UInt32, _ k: Int) -> IPAddress {
        let p = entry(i) + ConnField.addresses + k * addrSize
        if isV6 {
            return IPAddress(hi: p.loadUnaligned(as: UInt64.self), lo: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self), family: .inet6)
        }
        return IPAddress(v4: p.load(as: UInt32.self))
    }

    @inline(__always)
    public func setAddress(_ i: UInt32, _ k: Int, _ a: IPAddress) {
        let p = entry(i) + ConnField.addresses + k * addrSize
        if isV6 {
            p.storeBytes(of: a.hi, as: UInt64.self)
            p.storeBytes(of: a.lo, toByteOffset: 8, as: UInt64.self)
        } else {
            p.storeBytes(of: a.v4, as: UInt32.self)
        }
    }

    @inline(__always)
    func addressEquals(_ i: UInt32, _ k: Int, _ a: IPAddress) -> Bool {
        let p = entry(i) + ConnField.addresses + k * addrSize
        if isV6 {
            return p.loadUnaligned(as: UInt64.self) == a.hi && p.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == a.lo
        }
        return p.load(as: UInt32.self) == a.v4
    }

    // MARK: hashing and lookup

    @inline(__always)
    public func hash(proto: UInt8, client: IPAddress, port: UInt16) -> UInt32 {
        client.isV4 ? hash4(proto: proto, client: client.v4, port: port)
                    : mix(client.lo ^ (client.hi &* 0x9E37_79B9_7F4A_7C15), proto: proto, port: port)
    }

    /// The key mixer both families share.
    @inline(__always)
    func mix(_ address: UInt64, proto: UInt8, port: UInt16) -> UInt32 {
        // An IPv4 key (address, port, protocol) fits in 64 bits as it is.
        // One multiply, high half (Fibonacci hashing): the bucket bits depend
        // on every address and port bit. Simulated with 2M keys in 2^20
        // buckets, it fills them as a random function does for random keys
        // (at most 12 in a bucket, 0.08 % over 7) and better for clients
        // counting up through addresses or ports, in either byte order, or
        // striding (at most 5, none over 7), where a second
        // multiply-xorshift round only made them random again.
        let key = address ^ (UInt64(port) << 32 | UInt64(proto) << 48)
        let x = (key ^ seed) &* 0x9E37_79B9_7F4A_7C15
        return UInt32(truncatingIfNeeded: x >> 32)
    }

    @inline(__always) func bucket(_ b: Int) -> UnsafeMutableRawPointer { buckets + b * ConnTable.bucketBytes }

    /// Bit s set when slot s (0...6) of a bucket holds `sig` (0: the slot is free).
    @inline(__always)
    static func slotsMatching(_ bucket: UnsafeRawPointer, _ sig: UInt32) -> UInt32 {
        sy_match_signatures(bucket, sig) & 0x7F
    }
    @inline(__always) func signature(_ h: UInt32) -> UInt32 { h | 0x8000_0000 }

    /// Prefetch the index bucket for a hash (batched lookups issue these for a whole burst first).
    @inline(__always)
    public func bucketAddress(for h: UInt32) -> UnsafeRawPointer { UnsafeRawPointer(bucket(Int(h) & bucketMask)) }

    /// Walk the index for hash h and return the first entry `match` accepts.
    @inline(__always)
    public func find(_ h: UInt32, _ match: (UInt32) -> Bool) -> UInt32? {
        let sig = signature(h)
        var b = Int(h) & bucketMask
        while true {
            let bp = bucket(b)
            var hits = ConnTable.slotsMatching(bp, sig)
            while hits != 0 {
                let idx = bp.load(fromByteOffset: 32 + hits.trailingZeroBitCount * 4, as: UInt32.self)
                if match(idx) { return idx }
                hits &= hits &- 1
            }
            if bp.load(fromByteOffset: 28, as: UInt32.self) == 0 { return nil }
            b = (b + 1) & bucketMask
        }
    }

    /// Connection whose client side is <proto, caddr:cport> and virtual side vaddr:vport.
    @inline(__always)
    public func lookupIn(proto: UInt8, caddr: IPAddress, cport: UInt16, vaddr: IPAddress, vport: UInt16) -> UInt32? {
        lookup(proto: proto, caddr: caddr, cport: cport, addressIndex: 1, addr: vaddr, portField: ConnField.vport, port: vport)
    }

    /// Connection whose real server daddr:dport talks to client caddr:cport (a NAT reply).
    @inline(__always)
    public func lookupOut(proto: UInt8, caddr: IPAddress, cport: UInt16, daddr: IPAddress, dport: UInt16) -> UInt32? {
        lookup(proto: proto, caddr: caddr, cport: cport, addressIndex: 2, addr: daddr, portField: ConnField.dport, port: dport)
    }

    /// A connection (not a template) of client <proto, caddr:cport> whose
    /// other side (virtual: address 1 / vport, or real server: address 2 /
    /// dport) is addr:port.
    @inline(__always)
    func lookup(proto: UInt8, caddr: IPAddress, cport: UInt16, addressIndex: Int, addr: IPAddress, portField: Int,
                port: UInt16) -> UInt32? {
        find(hash(proto: proto, client: caddr, port: cport)) { i in
            (self.flags(i) & ConnFlags.template) == 0 && self.u8(i, ConnField.proto) == proto
                && self.u16(i, ConnField.cport) == cport && self.u16(i, portField) == port
                && self.addressEquals(i, 0, caddr) && self.addressEquals(i, addressIndex, addr)
        }
    }

    /// The same hash as `hash(proto:client:port:)` for an IPv4 client.
    @inline(__always)
    public func hash4(proto: UInt8, client: UInt32, port: UInt16) -> UInt32 {
        hashFrame4(proto: proto, client: client.bigEndian, port: port.bigEndian)
    }

    /// `hash4` of the client address and port as they lie in a frame
    /// (network order, loaded as they are): IPv4 keys are hashed in that
    /// order, so the fast path hashes a frame with no byte swaps.
    @inline(__always)
    public func hashFrame4(proto: UInt8, client: UInt32, port: UInt16) -> UInt32 {
        mix(UInt64(client), proto: proto, port: port)
    }

    /// IPv4 lookups on 32-bit keys for the fast path: the same entries as
    /// lookupIn/lookupOut, compared field by field in the entry's cache line.
    /// `daddrSide` false: <client, cport, vaddr, vport>; true: <client, cport, daddr, dport>.
    @inline(__always)
    public func lookup4(proto: UInt8, client: UInt32, cport: UInt16, addr: UInt32, port: UInt16, daddrSide: Bool,
                        hash known: UInt32 = 0) -> UInt32? {
        let h = known != 0 ? known : hash4(proto: proto, client: client, port: cport)
        let sig = signature(h)
        let portOff = daddrSide ? ConnField.dport : ConnField.vport
        let addrOff = ConnField.addresses + (daddrSide ? 8 : 4)
        // proto @34 and the template flag; cport and the other port: one compare each.
        var b = Int(h) & bucketMask
        while true {
            let bp = bucket(b)
            var hits = ConnTable.slotsMatching(bp, sig)
            while hits != 0 {
                let i = bp.load(fromByteOffset: 32 + hits.trailingZeroBitCount * 4, as: UInt32.self)
                hits &= hits &- 1
                let e = entries + Int(i) * stride
                if e.load(fromByteOffset: ConnField.addresses, as: UInt32.self) == client
                    && e.load(fromByteOffset: addrOff, as: UInt32.self) == addr
                    && e.load(fromByteOffset: ConnField.cport, as: UInt16.self) == cport
                    && e.load(fromByteOffset: portOff, as: UInt16.self) == port
                    && e.load(fromByteOffset: ConnField.proto, as: UInt8.self) == proto
                    && e.load(fromByteOffset: ConnField.flags, as: UInt16.self) & ConnFlags.template == 0 {
                    return i
                }
            }
            if bp.load(fromByteOffset: 28, as: UInt32.self) == 0 { return nil }
            b = (b + 1) & bucketMask
        }
    }

    /// For prefetching a burst: the addresses of the entries that the
    /// buckets of `count` hashes point to (slots with a matching signature;
    /// hash 0 = none), at most `capacity` of them. Returns how many.
    public func candidateEntries(_ hashes: UnsafePointer<UInt32>, count: Int,
                                 into out: UnsafeMutablePointer<UnsafeRawPointer>, capacity: Int) -> Int {
        var n = 0
        for k in 0..<count {
            let h = hashes[k]
            if h == 0 { continue }
            let sig = signature(h)
            let bp = bucket(Int(h) & bucketMask)
            var hits = ConnTable.slotsMatching(bp, sig)
            while hits != 0 {
                if n == capacity { return n }
                let slot = hits.trailingZeroBitCount
                out[n] = UnsafeRawPointer(entries + Int(bp.load(fromByteOffset: 32 + slot * 4, as: UInt32.self)) * stride)
                n += 1
                hits &= hits &- 1
            }
        }
        return n
    }

    /// Persistence template <proto, client net, 0, vaddr, vport>.
    public func lookupTemplate(proto: UInt8, cnet: IPAddress, vaddr: IPAddress, vport: UInt16) -> UInt32? {
        let h = hash(proto: proto, client: cnet, port: 0)
        return find(h) { i in
            let f = self.flags(i)
            return (f & ConnFlags.template) != 0 && (f & ConnFlags.invalidated) == 0
                && self.u8(i, ConnField.proto) == proto && self.u16(i, ConnField.vport) == vport
                && self.addressEquals(i, 0, cnet) && self.addressEquals(i, 1, vaddr)
        }
    }

    // MARK: insertion and removal

    /// Take a free entry, fill the key and link it into the index. Nil when full.
    public mutating func insert(proto: UInt8, caddr: IPAddress, cport: UInt16, vaddr: IPAddress, vport: UInt16,
                                daddr: IPAddress, dport: UInt16, flags: UInt16) -> UInt32? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        let i = freeStack[freeCount]
        let e = entry(i)
        e.initializeMemory(as: UInt8.self, repeating: 0, count: stride)
        set8(i, ConnField.proto, proto)
        set16(i, ConnField.cport, cport)
        set16(i, ConnField.vport, vport)
        set16(i, ConnField.dport, dport)
        setAddress(i, 0, caddr)
        setAddress(i, 1, vaddr)
        setAddress(i, 2, daddr)
        set16(i, ConnField.flags, flags | ConnFlags.inUse)
        let h = hash(proto: proto, client: caddr, port: cport)
        set32(i, ConnField.hash, h)
        link(i, h)
        return i
    }

    mutating func link(_ i: UInt32, _ h: UInt32) {
        let sig = signature(h)
        var b = Int(h) & bucketMask
        while true {
            let bp = bucket(b)
            let free = ConnTable.slotsMatching(bp, 0)
            if free != 0 {
                let slot = free.trailingZeroBitCount
                bp.storeBytes(of: sig, toByteOffset: slot * 4, as: UInt32.self)
                bp.storeBytes(of: i, toByteOffset: 32 + slot * 4, as: UInt32.self)
                return
            }
            // Full: record that a key passed this bucket, so lookups keep probing.
            bp.storeBytes(of: bp.load(fromByteOffset: 28, as: UInt32.self) + 1, toByteOffset: 28, as: UInt32.self)
            b = (b + 1) & bucketMask
        }
    }

    /// Remove entry i from the index (it stays allocated; see `free`).
    public mutating func unhash(_ i: UInt32) {
        let h = u32(i, ConnField.hash)
        let sig = signature(h)
        var b = Int(h) & bucketMask
        while true {
            let bp = bucket(b)
            for s in 0..<ConnTable.slotsPerBucket
            where bp.load(fromByteOffset: s * 4, as: UInt32.self) == sig
                && bp.load(fromByteOffset: 32 + s * 4, as: UInt32.self) == i {
                bp.storeBytes(of: 0, toByteOffset: s * 4, as: UInt32.self)
                return
            }
            let o = bp.load(fromByteOffset: 28, as: UInt32.self)
            precondition(o > 0, "connection index corrupt: entry not found")
            bp.storeBytes(of: o - 1, toByteOffset: 28, as: UInt32.self)
            b = (b + 1) & bucketMask
        }
    }

    /// Re-key a template so it can no longer match (the kernel rehashes it
    /// with vport 0xffff); it stays on the wheel until it expires.
    public mutating func invalidateTemplate(_ i: UInt32) {
        setFlags(i, flags(i) | ConnFlags.invalidated)
    }

    /// Return an entry (already unhashed and off the wheel) to the pool.
    public mutating func free(_ i: UInt32) {
        setFlags(i, 0)
        freeStack[freeCount] = i
        freeCount += 1
    }

    // MARK: timer wheel
    //
    // Slot t holds entries whose expiry tick is t (or later: re-armed lazily).
    // Ticks up to `processedTick` are done; the current tick (processedTick + 1)
    // is done up to the current microsecond: its slot is walked whenever `now`
    // passes the slot's earliest expiry, kept in `slotMin` as a lower bound.

    /// Ticks are counted from 1, so "the tick before the first" exists.
    @inline(__always) static func tick(_ micros: UInt64) -> UInt64 { micros / tickMicros + 1 }

    /// Set an entry's expiry (µs), re-filing it only when it must fire
    /// earlier than the slot it is filed in. An expiry in the past fires at
    /// the next advance, as a kernel timer set in the past does.
    @inline(__always)
    public mutating func arm(_ i: UInt32, expires: UInt64) {
        set64(i, ConnField.expires, expires)
        let mask = UInt64(ConnTable.wheelSize - 1)
        var t = ConnTable.tick(expires)
        if t <= processedTick { t = processedTick + 1 }
        if !isFiled(i) {
            wheelLink(i, slot: Int(t & mask), expires: expires)
            return
        }
        // The filed slot comes round after `dLinked` ticks (1...size).
        let slot = UInt64(u16(i, ConnField.wheelSlot))
        let dLinked = ((slot &- processedTick &- 1) & mask) + 1
        if t - processedTick < dLinked {
            wheelUnlink(i)
            wheelLink(i, slot: Int(t & mask), expires: expires)
        } else if expires < slotMin[Int(slot)] {
            slotMin[Int(slot)] = expires
        }
    }

    @inline(__always)
    mutating func wheelLink(_ i: UInt32, slot: Int, expires: UInt64) {
        let head = wheel[slot]
        set32(i, ConnField.next, head)
        set32(i, ConnField.prev, 0)
        if head != 0 { set32(head - 1, ConnField.prev, i + 1) }
        wheel[slot] = i + 1
        set16(i, ConnField.wheelSlot, UInt16(slot))
        if expires < slotMin[slot] { slotMin[slot] = expires }
    }

    public mutating func wheelUnlink(_ i: UInt32) {
        let n = u32(i, ConnField.next), p = u32(i, ConnField.prev)
        let slot = Int(u16(i, ConnField.wheelSlot))
        if p != 0 {
            set32(p - 1, ConnField.next, n)
        } else if wheel[slot] == i + 1 {
            wheel[slot] = n
        } else {
            return   // not filed
        }
        if n != 0 { set32(n - 1, ConnField.prev, p) }
        set32(i, ConnField.next, 0)
        set32(i, ConnField.prev, 0)
    }

    /// Advance the wheel to `now` (µs): every entry whose expiry is at or
    /// before now is handed to `due` (already off the wheel), in the order
    /// they fell due up to tick granularity, which must free it or `arm` it
    /// again. Entries not yet due are re-filed.
    @inline(__always)
    public mutating func advance(to now: UInt64, _ due: (inout ConnTable, UInt32) -> Void) {
        let target = ConnTable.tick(now)
        if !wheelStarted {
            wheelStarted = true
            processedTick = target - 1
        }
        if target > processedTick + 1 {
            if target - processedTick > UInt64(ConnTable.wheelSize) {
                advanceLongGap(now, due)
            } else {
                advanceTicks(through: target - 1, due)
            }
        }
        let slot = Int(target & UInt64(ConnTable.wheelSize - 1))
        if now >= slotMin[slot] { advanceWithinTick(slot: slot, tick: target, now: now, due) }
    }

    /// Process whole ticks processedTick+1 ... last.
    mutating func advanceTicks(through last: UInt64, _ due: (inout ConnTable, UInt32) -> Void) {
        let mask = UInt64(ConnTable.wheelSize - 1)
        var t = processedTick + 1
        while t <= last {
            let slot = Int(t & mask)
            var cur = wheel[slot]
            wheel[slot] = 0
            slotMin[slot] = UInt64.max
            processedTick = t
            while cur != 0 {
                let i = cur - 1
                cur = u32(i, ConnField.next)
                set32(i, ConnField.next, 0)
                set32(i, ConnField.prev, 0)
                let e = u64(i, ConnField.expires)
                let et = ConnTable.tick(e)
                if et <= t {
                    due(&self, i)
                } else {
                    wheelLink(i, slot: Int(et & mask), expires: e)
                }
            }
            t += 1
        }
    }

    /// The current tick's slot, up to `now`: due entries go, the rest stay.
    mutating func advanceWithinTick(slot: Int, tick: UInt64, now: UInt64, _ due: (inout ConnTable, UInt32) -> Void) {
        let mask = UInt64(ConnTable.wheelSize - 1)
        var cur = wheel[slot]
        wheel[slot] = 0
        slotMin[slot] = UInt64.max
        while cur != 0 {
            let i = cur - 1
            cur = u32(i, ConnField.next)
            set32(i, ConnField.next, 0)
            set32(i, ConnField.prev, 0)
            let e = u64(i, ConnField.expires)
            if e <= now {
                due(&self, i)
            } else {
                // Later in this tick stays here (the list was detached, so it is not walked again).
                wheelLink(i, slot: ConnTable.tick(e) > tick ? Int(ConnTable.tick(e) & mask) : slot, expires: e)
            }
        }
    }

    /// A gap longer than one turn of the wheel (a quiet replay): take every
    /// entry due by `now` off the wheel and run them in the order they fell
    /// due, including entries re-armed on the way (templates retrying), so
    /// the result is what running the timers on time would have given.
    mutating func advanceLongGap(_ now: UInt64, _ due: (inout ConnTable, UInt32) -> Void) {
        // Empty the wheel: what is due goes to the heap; everything else is
        // re-filed below by its true expiry (a lazily filed entry's old slot
        // may otherwise come round only after it is due, the jump having
        // skipped the visit that would have moved it).
        var heap = DueHeap()
        var later: [UInt32] = []
        for slot in 0..<ConnTable.wheelSize {
            var cur = wheel[slot]
            wheel[slot] = 0
            slotMin[slot] = UInt64.max
            while cur != 0 {
                let i = cur - 1
                cur = u32(i, ConnField.next)
                set32(i, ConnField.next, 0)
                set32(i, ConnField.prev, 0)
                if u64(i, ConnField.expires) <= now {
                    heap.push(u64(i, ConnField.expires), i)
                } else {
                    later.append(i)
                }
            }
        }
        processedTick = ConnTable.tick(now) - 1
        let mask = UInt64(ConnTable.wheelSize - 1)
        for i in later {
            let e = u64(i, ConnField.expires)
            wheelLink(i, slot: Int(ConnTable.tick(e) & mask), expires: e)
        }
        processedTick = 0
        while let (exp, i) = heap.pop() {
            let t = ConnTable.tick(exp)
            if t > processedTick + 1 { processedTick = t - 1 }
            // (re-arms while catching up file relative to the due time)
            due(&self, i)
            // Re-armed (still in use, back on the wheel) and due again by now?
            if flags(i) & ConnFlags.inUse != 0 && isFiled(i) && u64(i, ConnField.expires) <= now {
                wheelUnlink(i)
                heap.push(u64(i, ConnField.expires), i)
            }
        }
        processedTick = ConnTable.tick(now) - 1
        // Slots may hold entries filed at a now-stale tick; their minimums are lower bounds still.
    }

    @inline(__always)
    func isFiled(_ i: UInt32) -> Bool {
        u32(i, ConnField.prev) != 0 || wheel[Int(u16(i, ConnField.wheelSlot))] == i + 1
    }

    /// Every in-use entry index (for listings and tests; not for the packet path).
    public func forEach(_ body: (UInt32) -> Void) {
        // Entries never handed out may hold garbage; the free stack tells.
        var used = [Bool](repeating: true, count: capacity)
        for k in 0..<freeCount { used[Int(freeStack[k])] = false }
        for i in 0..<capacity where used[i] { body(UInt32(i)) }
    }
}

/// A binary min-heap of (expiry, entry) for catching up after long gaps (slow path).
struct DueHeap {
    var items: [(UInt64, UInt32)] = []

    mutating func push(_ e: UInt64, _ i: UInt32) {
        items.append((e, i))
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            if items[p] <= items[c] { break }
            items.swapAt(p, c)
            c = p
        }
    }

    mutating func pop() -> (UInt64, UInt32)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < items.count && items[l] < items[m] { m = l }
                if r < items.count && items[r] < items[m] { m = r }
                if m == p { break }
                items.swapAt(p, m)
                p = m
            }
        }
        return top
    }
}
