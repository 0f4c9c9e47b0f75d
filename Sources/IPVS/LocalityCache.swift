// The address-keyed cache of the locality schedulers (lblc, lblcr): 1024
// hash buckets (hash_32 of the folded address, 10 bits), entries added at
// the head of their bucket, and the kernel's periodic garbage collection.
// Entries live in a pooled array with free-list reuse, so steady-state
// scheduling does not allocate.

struct LocalityCache<Payload> {
    static var bits: UInt32 { 10 }
    static var size: Int { 1 << 10 }
    static var mask: Int { size - 1 }
    /// IP_VS_LBLC(R)_TAB_SIZE * 16.
    static var maxSize: Int { size * 16 }
    /// Entries idle this long may go when the table is over maxSize (6 min).
    static var entryTimeout: Double { 360 }
    /// Every 30th timer run does a full expiration pass.
    static var countForFullExpiration: Int { 30 }

    struct Slot {
        var addr: IPAddress
        var lastUse: Double
        var next: Int32
        var payload: Payload?
    }

    var heads: [Int32]
    var slots: ContiguousArray<Slot> = []
    var freeList: Int32 = -1
    private(set) var entries = 0
    var rover = 0
    var counter = 1

    init() {
        heads = [Int32](repeating: -1, count: LocalityCache.size)
    }

    @inline(__always)
    static func bucket(_ addr: IPAddress) -> Int {
        Int(SchedHash.hash32(addr.folded, bits: bits))
    }

    @inline(__always)
    func find(_ addr: IPAddress) -> Int32 {
        var i = heads[LocalityCache.bucket(addr)]
        while i >= 0 {
            if slots[Int(i)].addr == addr { return i }
            i = slots[Int(i)].next
        }
        return -1
    }

    /// Add a new entry at the head of its bucket.
    @discardableResult
    mutating func insert(_ addr: IPAddress, _ payload: Payload, now: Double) -> Int32 {
        let b = LocalityCache.bucket(addr)
        let slot = Slot(addr: addr, lastUse: now, next: heads[b], payload: payload)
        let idx: Int32
        if freeList >= 0 {
            idx = freeList
            freeList = slots[Int(idx)].next
            slots[Int(idx)] = slot
        } else {
            idx = Int32(slots.count)
            slots.append(slot)
        }
        heads[b] = idx
        entries += 1
        return idx
    }

    /// Unlink the entry `idx` (found in bucket `b` after `prev`, -1 if first).
    @inline(__always)
    private mutating func unlink(_ idx: Int32, bucket b: Int, prev: Int32) {
        let next = slots[Int(idx)].next
        if prev >= 0 { slots[Int(prev)].next = next } else { heads[b] = next }
        slots[Int(idx)].payload = nil
        slots[Int(idx)].next = freeList
        freeList = idx
        entries -= 1
    }

    mutating func remove(_ idx: Int32) {
        let b = LocalityCache.bucket(slots[Int(idx)].addr)
        var prev: Int32 = -1
        var i = heads[b]
        while i >= 0 {
            if i == idx { unlink(i, bucket: b, prev: prev); return }
            prev = i
            i = slots[Int(i)].next
        }
    }

    /// Delete the entries of bucket `b` idle since `now - idle` or longer
    /// (`now >= lastUse + idle`); returns how many went.
    private mutating func expireBucket(_ b: Int, now: Double, idle: Double) -> Int {
        var gone = 0
        var prev: Int32 = -1
        var i = heads[b]
        while i >= 0 {
            let next = slots[Int(i)].next
            if now < slots[Int(i)].lastUse + idle {
                prev = i
            } else {
                unlink(i, bucket: b, prev: prev)
                gone += 1
            }
            i = next
        }
        return gone
    }

    /// One run of the 60-second GC timer.
    mutating func periodic(now: Double, expiration: Double) {
        if counter % LocalityCache.countForFullExpiration == 0 {
            var j = rover
            for _ in 0..<LocalityCache.size {
                j = (j + 1) & LocalityCache.mask
                _ = expireBucket(j, now: now, idle: expiration)
            }
            rover = j
            counter = 1
            return
        }
        if entries <= LocalityCache.maxSize {
            counter += 1
            return
        }
        var goal = (entries - LocalityCache.maxSize) * 4 / 3
        if goal > LocalityCache.maxSize / 2 { goal = LocalityCache.maxSize / 2 }
        var j = rover
        for _ in 0..<LocalityCache.size {
            j = (j + 1) & LocalityCache.mask
            goal -= expireBucket(j, now: now, idle: LocalityCache.entryTimeout)
            if goal <= 0 { break }
        }
        rover = j
    }

    mutating func removeAll() {
        for i in 0..<heads.count { heads[i] = -1 }
        slots.removeAll(keepingCapacity: true)
        freeList = -1
        entries = 0
    }
}

/// The locality schedulers' "overloaded" test: more active conns than the
/// weight while some dest of the service is below half its weight.
@inline(__always)
func localityOverloaded(_ dest: Dest, _ service: Service) -> Bool {
    if dest.active > dest.weight {
        for d in service.dests where Int64(d.active) * 2 < Int64(d.weight) {
            return true
        }
    }
    return false
}
