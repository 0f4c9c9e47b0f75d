// The established-flow fast path for IPv4: the packets that make up nearly
// all of a balancer's traffic (data of established TCP connections, UDP
// flows) are recognised, looked up and rewritten straight from the frame's
// bytes, with no PacketInfo, no IPAddress values on the way and no state
// transition to run. Anything else — a new connection, a TCP flag that can
// change the state, IP options, fragments, TTL ≤ 1, an oversize packet,
// LVS/TUN, an unavailable server — is left untouched for the general path
// (Engine.process), which handles it with the full semantics.
//
// The result is the same as the general path's: same lookup, same counters,
// same timer re-arm (the state's timeout), same rewrite, TTL decrement.
//
// It works a burst at a time, in three passes, so that with millions of
// connections the index buckets and entries are already in cache when a
// packet needs them:
//   1. `fastPrepare`, per frame: is it a candidate, which direction (to a VIP:
//      client -> real server; otherwise a possible NAT reply), the hash of
//      the client endpoint; prefetch its index bucket.
//   2. `fastPrepare`, per candidate: the bucket's signatures compared at once;
//      the first match's entry is prefetched. No match and no overflow past
//      the bucket: certainly no connection, the general path creates one.
//   3. `fastForward`, per frame and in order, up to the first packet that
//      is not the fast path's (the caller hands that one to the general path
//      and resumes after it, so a burst's packets keep their order and every
//      packet sees the effect of the ones before it): the candidate entry is
//      verified against the full key — entries may have changed since pass 2
//      — and the packet is counted, re-armed and rewritten.
import CIntrinsics

/// Per-burst scratch of the fast path, allocated once per worker. The caller
/// fills `frames` and `lengths` for a burst and reads the verdicts through
/// `Engine.fastForward`.
public struct FastBurst {
    public let capacity: Int
    /// Each packet's frame (Ethernet header first) and its length in bytes.
    public let frames: UnsafeMutablePointer<UnsafeMutableRawPointer>
    public let lengths: UnsafeMutablePointer<Int>
    /// 0: not a fast-path candidate; 1: client -> VIP; 2: a possible NAT reply.
    let kinds: UnsafeMutablePointer<UInt8>
    /// The index hash of the packet's client endpoint.
    let hashes: UnsafeMutablePointer<UInt32>
    /// The entry the bucket's first matching signature names, + 1 (0: none in the home bucket).
    let candidates: UnsafeMutablePointer<UInt32>
    /// Pass 3's verdicts: each forwarded packet's host-order IPv4 next hop.
    public let nextHops: UnsafeMutablePointer<UInt32>

    public init(capacity: Int) {
        self.capacity = capacity
        frames = .allocate(capacity: capacity)
        lengths = .allocate(capacity: capacity)
        kinds = .allocate(capacity: capacity)
        kinds.initialize(repeating: 0, count: capacity)
        hashes = .allocate(capacity: capacity)
        candidates = .allocate(capacity: capacity)
        nextHops = .allocate(capacity: capacity)
    }

    public func deallocate() {
        frames.deallocate(); lengths.deallocate(); kinds.deallocate(); hashes.deallocate(); candidates.deallocate()
        nextHops.deallocate()
    }

    /// Whether pass 1 took packet k for a fast-path candidate.
    @inline(__always) public func isCandidate(_ k: Int) -> Bool { kinds[k] != 0 }
}

extension Engine {
    @inline(__always)
    static func rd16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 { UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always)
    static func rd32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 { UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always)
    static func wr16(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt16) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self) }
    @inline(__always)
    static func wr32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self) }

    /// RFC 1624 update of a checksum for a 16-bit and a 32-bit change at once.
    @inline(__always)
    static func csumUpdate(_ check: UInt16, old32: UInt32, new32: UInt32, old16: UInt16, new16: UInt16) -> UInt16 {
        var s = UInt32(~check) &+ (~old32 >> 16) &+ (~old32 & 0xFFFF) &+ (new32 >> 16) &+ (new32 & 0xFFFF)
        s = s &+ UInt32(~old16) &+ UInt32(new16)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// Offset of the frame's IPv4 header (bytes 14...) fields used below.
    /// Whether an untagged Ethernet/IPv4 frame may take the fast path at all:
    /// IHL 5, not a fragment, TTL survives, fits the frame and the MTU, and
    /// TCP that cannot change an ESTABLISHED connection's state or UDP with a
    /// checksum (a datagram without one gets a full one: the general path's job).
    @inline(__always)
    func fastEligible(_ p: UnsafeRawPointer, length: Int) -> Bool {
        guard length >= 42, p.load(fromByteOffset: 12, as: UInt16.self) == UInt16(0x0800).bigEndian,
              p.load(fromByteOffset: 14, as: UInt8.self) == 0x45 else { return false }
        let total = Int(Engine.rd16(p, 16))
        guard Engine.rd16(p, 20) & 0x3FFF == 0, p.load(fromByteOffset: 22, as: UInt8.self) > 1,
              total <= length - 14, total <= settings.mtu else { return false }
        let proto = p.load(fromByteOffset: 23, as: UInt8.self)
        if proto == 17 {
            let ulen = Int(Engine.rd16(p, 38))
            return ulen >= 8 && ulen <= total - 20 && p.load(fromByteOffset: 40, as: UInt16.self) != 0
        }
        guard proto == 6, total >= 40 else { return false }
        let doff = Int(p.load(fromByteOffset: 46, as: UInt8.self) >> 4) * 4
        let flags = p.load(fromByteOffset: 47, as: UInt8.self)
        // ACK set; no SYN, FIN or RST.
        return doff >= 20 && 20 + doff <= total && flags & 0x17 == 0x10
    }

    /// Passes 1 and 2 for the first `count` frames of `b`.
    public func fastPrepare(_ b: FastBurst, count: Int) {
        let table = v4
        for k in 0..<count {
            let p = UnsafeRawPointer(b.frames[k])
            guard fastEligible(p, length: b.lengths[k]) else { b.kinds[k] = 0; continue }
            let proto = p.load(fromByteOffset: 23, as: UInt8.self)
            let dst = Engine.rd32(p, 30)
            let h: UInt32
            if isVirtualAddress4(dst) {
                b.kinds[k] = 1
                h = table.hash4(proto: proto, client: Engine.rd32(p, 26), port: Engine.rd16(p, 34))
            } else {
                b.kinds[k] = 2
                h = table.hash4(proto: proto, client: dst, port: Engine.rd16(p, 36))
            }
            b.hashes[k] = h
            sy_prefetch_read(table.bucketAddress(for: h))
        }
        for k in 0..<count where b.kinds[k] != 0 {
            let h = b.hashes[k]
            let bucket = table.bucketAddress(for: h)
            let hits = sy_match_signatures(bucket, table.signature(h)) & 0x7F
            if hits != 0 {
                let i = bucket.load(fromByteOffset: 32 + hits.trailingZeroBitCount * 4, as: UInt32.self)
                b.candidates[k] = i &+ 1
                sy_prefetch_write(table.entry(i))
            } else if bucket.load(fromByteOffset: 28, as: UInt32.self) == 0 {
                b.kinds[k] = 0   // no connection: the general path makes one
            } else {
                b.candidates[k] = 0   // keys overflowed past this bucket: pass 3 probes
            }
        }
    }

    /// Pass 3 over packets `start..<end` of `b` at time `t` (µs), in order,
    /// up to the first that is not the fast path's: each is forwarded,
    /// rewritten in place, with its host-order IPv4 next hop (the real
    /// server, or the client for a NAT reply) in `b.nextHops`. Returns the
    /// index of the packet that stopped the run (untouched: the general
    /// path's turn), or `end`.
    public func fastForward(_ b: FastBurst, from start: Int, to end: Int, now t: UInt64) -> Int {
        if t != now { advance(to: t) }
        var k = start
        while k < end && b.kinds[k] != 0 {
            let hop = fastForward(b, k)
            if hop == 0 { break }
            b.nextHops[k] = hop
            k += 1
        }
        return k
    }

    /// Pass 3 for packet k: the next hop, or 0 with the packet untouched.
    @inline(__always)
    func fastForward(_ b: FastBurst, _ k: Int) -> UInt32 {
        let p = b.frames[k]
        let proto = p.load(fromByteOffset: 23, as: UInt8.self)
        let src = Engine.rd32(p, 26), dst = Engine.rd32(p, 30)
        let sport = Engine.rd16(p, 34), dport = Engine.rd16(p, 36)
        let total = UInt64(Engine.rd16(p, 16))
        let l4 = 34
        if b.kinds[k] == 1 {
            // Client -> VIP.
            guard let i = verified(b.candidates[k], proto: proto, client: src, cport: sport, addr: dst, port: dport,
                                   daddrSide: false, hash: b.hashes[k]) else { return 0 }
            let f = v4.flags(i)
            let method = f & ConnFlags.fwdMask
            guard method == UInt16(ForwardMethod.masq.rawValue) || method == UInt16(ForwardMethod.droute.rawValue),
                  proto == 17 || v4.u8(i, ConnField.state) == TCPState.established.rawValue else { return 0 }
            let destID = v4.u32(i, ConnField.destID)
            guard Int(destID) < maxIDs, destRoutes[Int(destID)].available else { return 0 }
            let sid = Int(v4.u32(i, ConnField.serviceID))
            destStats[Int(destID)].add(bytes: total, inbound: true)
            if sid < maxIDs { serviceStats[sid].add(bytes: total, inbound: true) }
            rearm(i, proto: proto)
            let daddr = v4.u32(i, ConnField.addresses + 8)
            if method == UInt16(ForwardMethod.masq.rawValue) {
                // TTL and destination in one header checksum update.
                let rport = v4.u16(i, ConnField.dport)
                let ttlWord = Engine.rd16(p, 22)
                p.storeBytes(of: UInt8(truncatingIfNeeded: ttlWord >> 8) &- 1, toByteOffset: 22, as: UInt8.self)
                Engine.wr32(p, 30, daddr)
                Engine.wr16(p, 24, Engine.csumUpdate(Engine.rd16(p, 24), old32: dst, new32: daddr,
                                                     old16: ttlWord, new16: ttlWord &- 0x0100))
                Engine.wr16(p, l4 + 2, rport)
                rewriteL4Checksum(p, proto: proto, l4: l4, oldAddr: dst, newAddr: daddr, oldPort: dport, newPort: rport)
            } else {
                decrementTTL(p)
            }
            return daddr
        }
        // Real server -> client: a NAT reply.
        guard let i = verified(b.candidates[k], proto: proto, client: dst, cport: dport, addr: src, port: sport,
                               daddrSide: true, hash: b.hashes[k]) else { return 0 }
        let f = v4.flags(i)
        guard f & ConnFlags.fwdMask == UInt16(ForwardMethod.masq.rawValue), f & ConnFlags.noOutput == 0,
              proto == 17 || v4.u8(i, ConnField.state) == TCPState.established.rawValue else { return 0 }
        let destID = v4.u32(i, ConnField.destID)
        guard Int(destID) < maxIDs, destRoutes[Int(destID)].available else { return 0 }
        let sid = Int(v4.u32(i, ConnField.serviceID))
        destStats[Int(destID)].add(bytes: total, inbound: false)
        if sid < maxIDs { serviceStats[sid].add(bytes: total, inbound: false) }
        rearm(i, proto: proto)
        // A UDP reply makes its persistence template ASSURED, as set_state(OUTPUT) does.
        let ctl = v4.u32(i, ConnField.control)
        if proto == 17 && ctl != 0 { v4.setFlags(ctl - 1, v4.flags(ctl - 1) | ConnFlags.assured) }
        let vaddr = v4.u32(i, ConnField.addresses + 4)
        let vport = v4.u16(i, ConnField.vport)
        let ttlWord = Engine.rd16(p, 22)
        p.storeBytes(of: UInt8(truncatingIfNeeded: ttlWord >> 8) &- 1, toByteOffset: 22, as: UInt8.self)
        Engine.wr32(p, 26, vaddr)
        Engine.wr16(p, 24, Engine.csumUpdate(Engine.rd16(p, 24), old32: src, new32: vaddr,
                                             old16: ttlWord, new16: ttlWord &- 0x0100))
        Engine.wr16(p, l4, vport)
        rewriteL4Checksum(p, proto: proto, l4: l4, oldAddr: src, newAddr: vaddr, oldPort: sport, newPort: vport)
        return dst
    }

    /// The connection pass 2 pointed at, if it still is the one for this key
    /// (it may have expired, been replaced or reused since); otherwise the
    /// full probe of the index.
    @inline(__always)
    func verified(_ candidate: UInt32, proto: UInt8, client: UInt32, cport: UInt16, addr: UInt32, port: UInt16,
                  daddrSide: Bool, hash: UInt32) -> UInt32? {
        if candidate != 0 {
            let i = candidate &- 1
            let e = v4.entry(i)
            let portOff = daddrSide ? ConnField.dport : ConnField.vport
            let addrOff = ConnField.addresses + (daddrSide ? 8 : 4)
            if e.load(fromByteOffset: ConnField.addresses, as: UInt32.self) == client
                && e.load(fromByteOffset: addrOff, as: UInt32.self) == addr
                && e.load(fromByteOffset: ConnField.cport, as: UInt16.self) == cport
                && e.load(fromByteOffset: portOff, as: UInt16.self) == port
                && e.load(fromByteOffset: ConnField.proto, as: UInt8.self) == proto
                && e.load(fromByteOffset: ConnField.flags, as: UInt16.self)
                    & (ConnFlags.inUse | ConnFlags.template | ConnFlags.dying) == ConnFlags.inUse {
                return i
            }
        }
        return v4.lookup4(proto: proto, client: client, cport: cport, addr: addr, port: port, daddrSide: daddrSide,
                          hash: hash)
    }

    /// The state's timeout from now, as set_state does on every packet. The
    /// fast path's state keeps its timeout, so the expiry only moves later
    /// and the wheel needs no visit (see ConnTable.arm) — unless the timeouts
    /// were shortened since.
    @inline(__always)
    func rearm(_ i: UInt32, proto: UInt8) {
        let ms = proto == 6 ? timeoutsMs[Int(TCPState.established.rawValue)] : timeoutsMs[TCPState.count]
        v4.set32(i, ConnField.timeout, ms)
        let expires = now &+ UInt64(ms) &* 1000
        if expires >= v4.u64(i, ConnField.expires) {
            v4.set64(i, ConnField.expires, expires)
        } else {
            v4.arm(i, expires: expires)
        }
    }

    /// Whether an IPv4 address (host order) is a VIP.
    @inline(__always)
    func isVirtualAddress4(_ v: UInt32) -> Bool {
        var h = Int((v &* 0x9E37_79B1) >> 22)
        while true {
            let x = vip4[h]
            if x == v { return v != 0 }
            if x == 0 { return false }
            h = (h + 1) & (Engine.vip4Slots - 1)
        }
    }

    /// TTL - 1 with the header checksum updated (the caller checked TTL > 1).
    @inline(__always)
    func decrementTTL(_ p: UnsafeMutableRawPointer) {
        let word = Engine.rd16(p, 22)
        p.storeBytes(of: p.load(fromByteOffset: 22, as: UInt8.self) &- 1, toByteOffset: 22, as: UInt8.self)
        var s = UInt32(~Engine.rd16(p, 24)) &+ UInt32(~word) &+ UInt32(word &- 0x0100)
        s = (s >> 16) &+ (s & 0xFFFF)
        s = (s >> 16) &+ (s & 0xFFFF)
        Engine.wr16(p, 24, ~UInt16(truncatingIfNeeded: s))
    }

    /// TCP/UDP checksum after an address and a port changed (pseudo-header
    /// included). A UDP checksum of 0 (none) gets a full computation on the
    /// general path's terms: the fast path leaves such packets alone.
    @inline(__always)
    func rewriteL4Checksum(_ p: UnsafeMutableRawPointer, proto: UInt8, l4: Int, oldAddr: UInt32, newAddr: UInt32,
                           oldPort: UInt16, newPort: UInt16) {
        let off = proto == 6 ? l4 + 16 : l4 + 6
        let c = Engine.rd16(p, off)
        var n = Engine.csumUpdate(c, old32: oldAddr, new32: newAddr, old16: oldPort, new16: newPort)
        if proto == 17 && n == 0 { n = 0xFFFF }
        Engine.wr16(p, off, n)
    }
}
