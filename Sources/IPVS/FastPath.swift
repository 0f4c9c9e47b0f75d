// The established-flow fast path for IPv4: the packets that make up nearly
// all of a balancer's traffic (data of established TCP connections, UDP
// flows) are recognised, looked up and rewritten straight from the frame's
// bytes, with no PacketInfo, no IPAddress values on the way and no state
// transition to run: LVS/NAT and LVS/DR, and LVS/TUN without a tunnel
// checksum to an IPv4 server (the caller encapsulates those). Anything else
// — a new connection, a TCP flag that can change the state, IP options,
// fragments, TTL ≤ 1, an oversize packet, checksummed or IPv6 tunnels, an
// unavailable server — is left untouched for the general path
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
    /// 0: not a fast-path candidate; 1: client -> VIP; 2: a possible NAT
    /// reply; once forwarded, `tunnelled` for a packet the caller encapsulates.
    let kinds: UnsafeMutablePointer<UInt8>
    /// The index hash of the packet's client endpoint.
    let hashes: UnsafeMutablePointer<UInt32>
    /// Pass 2's finding for pass 3, one word per packet: the address of the
    /// entry the bucket's first matching signature names (64-byte aligned)
    /// with the packet's kind in the low bits; `probe(kind:)` (no address)
    /// when the home bucket named none (pass 3 probes); 0 for a packet that
    /// is not a candidate.
    let candidates: UnsafeMutablePointer<UInt>
    /// Pass 3's verdicts: each forwarded packet's host-order IPv4 next hop
    /// or, for a packet whose kind became `tunnelled`, its dest id.
    public let nextHops: UnsafeMutablePointer<UInt32>
    /// How many packets of the last fastForward are `tunnelled`.
    public let tunnels: UnsafeMutablePointer<Int>

    /// The kind of a packet that fastForward forwarded by LVS/TUN: the
    /// caller encapsulates it (FastBurst.isTunnelled).
    public static let tunnelled: UInt8 = 3

    /// Whether fastForward left packet k for the caller to encapsulate.
    @inline(__always)
    public func isTunnelled(_ k: Int) -> Bool { kinds[k] == FastBurst.tunnelled }
    /// An entry whose expiry moved earlier and that the run left for
    /// re-filing on the timer wheel.
    let rearmed: UnsafeMutablePointer<UnsafeMutableRawPointer?>

    /// Entries are 64-byte aligned: the low bits of a candidate word hold the kind.
    static let entryAlignment: UInt = 64

    /// The candidate word for entry e and a packet of `kind`.
    @inline(__always)
    static func candidate(_ e: UnsafeMutableRawPointer, kind: UInt8) -> UInt { UInt(bitPattern: e) | UInt(kind) }

    /// The word for a packet of `kind` whose entry pass 3 must find by a full
    /// probe: its low bits are never a bare kind, so `entry` needs one test.
    @inline(__always)
    static func probe(kind: UInt8) -> UInt { UInt(kind) | 4 }

    /// Whether a candidate word names no entry (not a candidate, or a probe).
    @inline(__always)
    static func namesNoEntry(_ word: UInt) -> Bool { word < entryAlignment }

    /// Whether a candidate word names an entry for a packet of `kind`.
    @inline(__always)
    static func namesEntry(_ word: UInt, kind: UInt) -> Bool { word & (entryAlignment - 1) == kind }

    /// The entry of a word for which `namesEntry(word, kind:)` holds (never
    /// 0: probe words have other low bits).
    @inline(__always)
    static func entry(_ word: UInt, kind: UInt) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: word &- kind).unsafelyUnwrapped
    }

    public init(capacity: Int) {
        self.capacity = capacity
        frames = .allocate(capacity: capacity)
        lengths = .allocate(capacity: capacity)
        kinds = .allocate(capacity: capacity)
        kinds.initialize(repeating: 0, count: capacity)
        hashes = .allocate(capacity: capacity)
        candidates = .allocate(capacity: capacity)
        nextHops = .allocate(capacity: capacity)
        tunnels = .allocate(capacity: 1)
        tunnels.initialize(to: 0)
        rearmed = .allocate(capacity: 1)
        rearmed.initialize(to: nil)
    }

    public func deallocate() {
        frames.deallocate(); lengths.deallocate(); kinds.deallocate(); hashes.deallocate(); candidates.deallocate()
        nextHops.deallocate(); tunnels.deallocate(); rearmed.deallocate()
    }
}

extension Engine {
    @inline(__always)
    static func rd16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 { UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always)
    static func rd32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 { UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }

    /// What pass 1 makes of a frame: 0, not an untagged IPv4 TCP/UDP frame
    /// with IHL 5 and its ports, or a fragment (nothing to look up); 1, one, but for the
    /// general path (a new connection, a state change...: its index bucket is
    /// still prefetched, the general path looks there next); 2, a fast-path
    /// candidate: not a fragment, TTL survives, fits the frame and the MTU,
    /// and TCP that cannot change an ESTABLISHED connection's state or UDP
    /// with a checksum (a datagram without one gets a full one: the general
    /// path's job) whose length is the IP payload's (other lengths, rare,
    /// are the general path's too).
    @inline(__always)
    static func fastClass(_ p: UnsafeRawPointer, length: Int, mtu: Int) -> UInt8 {
        guard length >= 42 else { return 0 }
        // Header words as 32-bit loads: EtherType | version+IHL | TOS,
        // total length | ID, flags+fragment offset | TTL | protocol.
        let type = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        let fragWord = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        let proto = UInt8(truncatingIfNeeded: fragWord)
        // Not a fragment (MF clear, offset 0): a fragment's bucket is not
        // worth prefetching, the general path reassembles or passes it.
        guard type >> 8 == 0x08_0045, fragWord & 0x3FFF_0000 == 0 else { return 0 }
        let total = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt16.self)))
        // TTL >= 2; 28 <= total <= the frame's IP bytes (one unsigned compare:
        // length >= 42); within the MTU.
        let fits = fragWord & 0xFE00 != 0 && UInt(bitPattern: total &- 28) <= UInt(bitPattern: length &- 42)
            && total <= mtu
        if proto == 17 {
            guard fits else { return 1 }
            // UDP length | checksum: the length is the IP payload's and the
            // checksum is not 0, that is (length ^ payload) << 16 | checksum in 1...0xFFFF.
            let udp = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 38, as: UInt32.self))
                ^ UInt32(truncatingIfNeeded: total &- 20) << 16
            return udp &- 1 < 0xFFFF ? 2 : 1
        }
        guard proto == 6 else { return 0 }
        guard fits else { return 1 }
        // Data offset | flags (read only once the frame holds them): a header
        // that fits, ACK set, no SYN, FIN or RST.
        guard total >= 40 else { return 1 }
        let tcp = Engine.rd16(p, 46)
        let doff = Int(tcp >> 12) * 4
        return doff >= 20 && 20 + doff <= total && tcp & 0x17 == 0x10 ? 2 : 1
    }

    /// Passes 1 and 2 for the first `count` frames of `b`.
    public func fastPrepare(_ b: FastBurst, count: Int) {
        // Locals: the stores below could alias the engine's fields.
        let table = v4, mtu = settings.mtu
        let kinds = b.kinds, hashes = b.hashes, candidates = b.candidates, frames = b.frames, lengths = b.lengths
        // The last VIP seen: a burst is mostly traffic to a few. (A 0.0.0.0
        // destination taken for one finds no connection and goes the general way.)
        var lastVIP: UInt32 = 0
        for k in 0..<count {
            let p = UnsafeRawPointer(frames[k])
            let fast = Engine.fastClass(p, length: lengths[k], mtu: mtu)
            if fast == 0 { kinds[k] = 0; continue }
            // A reply's client is its destination; a packet to a VIP's, its
            // source. (Hashed as they lie in the frame: see hashFrame4.)
            let dstN = p.loadUnaligned(fromByteOffset: 30, as: UInt32.self)
            let dst = UInt32(bigEndian: dstN)
            var client = dstN, portAt = 36, kind: UInt8 = 2
            if dst == lastVIP || Engine.isVirtualAddress4(dst, vip4) {
                lastVIP = dst
                client = p.loadUnaligned(fromByteOffset: 26, as: UInt32.self)
                portAt = 34
                kind = 1
            }
            // A packet for the general path keeps kind 0: only its bucket is prefetched.
            kinds[k] = fast == 2 ? kind : 0
            let h = table.hashFrame4(proto: p.load(fromByteOffset: 23, as: UInt8.self), client: client,
                                     port: p.loadUnaligned(fromByteOffset: portAt, as: UInt16.self))
            hashes[k] = h
            sy_prefetch_read(table.bucketAddress(for: h))
        }
        let entries = table.entries
        for k in 0..<count {
            let kind = kinds[k]
            if kind == 0 { candidates[k] = 0; continue }
            let h = hashes[k]
            let bucket = table.bucketAddress(for: h)
            let hits = ConnTable.slotsMatching(bucket, table.signature(h))
            if hits != 0 {
                let i = bucket.load(fromByteOffset: 32 + hits.trailingZeroBitCount * 4, as: UInt32.self)
                let e = entries + Int(i) &<< 6
                candidates[k] = FastBurst.candidate(e, kind: kind)
                sy_prefetch_write(e)
            } else if bucket.load(fromByteOffset: 28, as: UInt32.self) == 0 {
                kinds[k] = 0   // no connection: the general path makes one
                candidates[k] = 0
            } else {
                candidates[k] = FastBurst.probe(kind: kind)   // keys overflowed past this bucket: pass 3 probes
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
        let c = FastContext(self)
        b.tunnels.pointee = 0
        var k = start
        // Runs of one direction at a time, each a tight loop of its own with
        // no calls in it: what needs one (the full probe, a re-filing on the
        // timer wheel) ends the run and is done here.
        while k < end {
            let kind = b.kinds[k]
            if kind == 0 { return k }
            if FastBurst.namesNoEntry(b.candidates[k]) && !probe(b, k) { return k }
            var next = kind == 1 ? forwardInbound(b, from: k, to: end, c) : forwardReplies(b, from: k, to: end, c)
            // LVS/TUN runs have a loop of their own (leaving NAT's and DR's alone).
            if next == k && kind == 1 { next = forwardTunnels(b, from: k, to: end, c) }
            if let e = b.rearmed.pointee {
                b.rearmed.pointee = nil
                v4.arm(UInt32((e - c.entries) >> 6), expires: e.load(fromByteOffset: ConnField.expires, as: UInt64.self))
            }
            // Stopped at once on a packet with a candidate: not the fast path's.
            if next == k && !FastBurst.namesNoEntry(b.candidates[k]) { return k }
            k = next
        }
        return k
    }

    /// The full probe of the index for packet k, whose home bucket held no
    /// verified candidate: its entry becomes the candidate; false (and the
    /// packet is the general path's) when there is none the fast path can use.
    @inline(never)
    func probe(_ b: FastBurst, _ k: Int) -> Bool {
        let p = UnsafeRawPointer(b.frames[k])
        let inbound = b.kinds[k] == 1
        let proto = p.load(fromByteOffset: 23, as: UInt8.self)
        let src = Engine.rd32(p, 26), dst = Engine.rd32(p, 30), sport = Engine.rd16(p, 34), dport = Engine.rd16(p, 36)
        if let i = inbound
            ? v4.lookup4(proto: proto, client: src, cport: sport, addr: dst, port: dport, daddrSide: false,
                         hash: b.hashes[k])
            : v4.lookup4(proto: proto, client: dst, cport: dport, addr: src, port: sport, daddrSide: true,
                         hash: b.hashes[k]),
           case let e = v4.entries + Int(i) &<< 6, FastContext.usable(e) {
            b.candidates[k] = FastBurst.candidate(e, kind: b.kinds[k])
            return true
        }
        b.kinds[k] = 0
        b.candidates[k] = 0
        return false
    }

    /// Inbound packet k's candidate entry, the frame, its protocol and the
    /// entry's flags masked with liveMethodMask, when the entry has the
    /// packet's key; nil ends the run (see fastForward): no candidate, or a
    /// key that differs (then the candidate becomes a probe for the caller).
    @inline(__always)
    static func inboundEntry(_ k: Int, _ frames: UnsafeMutablePointer<UnsafeMutableRawPointer>,
                             _ candidates: UnsafeMutablePointer<UInt>)
        -> (UnsafeMutableRawPointer, UnsafeMutableRawPointer, UInt8, UInt16)? {
        let word = candidates[k]
        guard FastBurst.namesEntry(word, kind: 1) else { return nil }
        let e = FastBurst.entry(word, kind: 1)
        let p = frames[k]
        let proto = p.load(fromByteOffset: 23, as: UInt8.self)
        guard FastContext.matchesInbound(e, p, proto: proto) else {
            candidates[k] = FastBurst.probe(kind: 1)
            return nil
        }
        return (e, p, proto, e.load(fromByteOffset: ConnField.flags, as: UInt16.self) & FastContext.liveMethodMask)
    }

    /// Client -> VIP packets from `start` on, while they are of an
    /// established LVS/NAT or LVS/DR connection. Returns where it stopped.
    @inline(never)
    func forwardInbound(_ b: FastBurst, from start: Int, to end: Int, _ c: FastContext) -> Int {
        let frames = b.frames, candidates = b.candidates, hops = b.nextHops
        var k = start
        while k < end {
            guard let (e, p, proto, f) = Engine.inboundEntry(k, frames, candidates) else { break }
            // A live connection, NAT or DR, in one test per method; TCP only
            // while ESTABLISHED. (Not live: the general path's.)
            let masq = f == ConnFlags.inUse | UInt16(ForwardMethod.masq.rawValue)
            guard masq || f == ConnFlags.inUse | UInt16(ForwardMethod.droute.rawValue),
                  FastContext.established(e, proto: proto),
                  c.account(e, p, inbound: true) else { break }
            let refile = c.rearm(e, proto: proto)
            let daddr = e.load(fromByteOffset: ConnField.addresses + 8, as: UInt32.self)
            if masq {
                // The destination becomes the real server's address and port
                // (old and new values raw: the checksum arithmetic works in network order).
                Engine.natRewrite(p, addressAt: 30, portAt: 36, from: p.loadUnaligned(fromByteOffset: 30, as: UInt32.self),
                                  p.load(fromByteOffset: 36, as: UInt16.self), to: daddr.bigEndian,
                                  e.load(fromByteOffset: ConnField.dport, as: UInt16.self).bigEndian, proto: proto)
            } else {
                // LVS/DR: the IP header is unchanged but for the TTL.
                Engine.decrementTTLOnly(p)
            }
            hops[k] = daddr
            k += 1
            if refile { b.rearmed.pointee = e; break }
        }
        return k
    }

    /// Client -> VIP packets of established LVS/TUN connections from `start`
    /// on, whose encapsulation the caller can do straight from the frame:
    /// each is counted and re-armed, its TTL decremented (as for LVS/DR), and
    /// left with `kinds` 3 (FastBurst.tunnelled), its dest id in `nextHops`
    /// and `tunnels` counted. Returns where it stopped.
    @inline(never)
    func forwardTunnels(_ b: FastBurst, from start: Int, to end: Int, _ c: FastContext) -> Int {
        let frames = b.frames, candidates = b.candidates, hops = b.nextHops, kinds = b.kinds
        var k = start
        while k < end {
            guard let (e, p, proto, f) = Engine.inboundEntry(k, frames, candidates),
                  f == ConnFlags.inUse | UInt16(ForwardMethod.tunnel.rawValue), FastContext.established(e, proto: proto)
            else { break }
            // Encapsulated, it must still fit the MTU (else the general path
            // fragments it or answers with fragmentation needed).
            let destID = FastContext.destID(e)
            let header = Int(c.destRoutes[destID].fastTunnelHeader)
            guard header != 0, Int(Engine.rd16(p, 16)) + header <= c.mtu,
                  c.account(e, p, inbound: true) else { break }
            let refile = c.rearm(e, proto: proto)
            Engine.decrementTTLOnly(p)
            hops[k] = UInt32(destID)
            kinds[k] = FastBurst.tunnelled
            b.tunnels.pointee &+= 1
            k += 1
            if refile { b.rearmed.pointee = e; break }
        }
        return k
    }

    /// Real server -> client packets (LVS/NAT replies) from `start` on.
    /// Returns where it stopped.
    @inline(never)
    func forwardReplies(_ b: FastBurst, from start: Int, to end: Int, _ c: FastContext) -> Int {
        let frames = b.frames, candidates = b.candidates, hops = b.nextHops
        var k = start
        while k < end {
            let word = candidates[k]
            guard FastBurst.namesEntry(word, kind: 2) else { break }
            let e = FastBurst.entry(word, kind: 2)
            let p = frames[k]
            let proto = p.load(fromByteOffset: 23, as: UInt8.self)
            let srcN = p.loadUnaligned(fromByteOffset: 26, as: UInt32.self)
            let sportN = p.load(fromByteOffset: 34, as: UInt16.self)
            let client = p.loadUnaligned(fromByteOffset: 30, as: UInt32.self).bigEndian
            guard c.matchesReply(e, proto: proto, client: client,
                                 cport: p.load(fromByteOffset: 36, as: UInt16.self).bigEndian,
                                 daddr: srcN.bigEndian, dport: sportN.bigEndian)
            else { candidates[k] = FastBurst.probe(kind: 2); break }   // the caller probes
            let f = e.load(fromByteOffset: ConnField.flags, as: UInt16.self)
            guard f & ConnFlags.fwdMask == UInt16(ForwardMethod.masq.rawValue), f & ConnFlags.noOutput == 0,
                  FastContext.established(e, proto: proto),
                  c.account(e, p, inbound: false) else { break }
            let refile = c.rearm(e, proto: proto)
            // A UDP reply makes its persistence template ASSURED, as set_state(OUTPUT) does.
            let ctl = e.load(fromByteOffset: ConnField.control, as: UInt32.self)
            if proto == 17 && ctl != 0 {
                let t = c.entry(ctl - 1)
                t.storeBytes(of: t.load(fromByteOffset: ConnField.flags, as: UInt16.self) | ConnFlags.assured,
                             toByteOffset: ConnField.flags, as: UInt16.self)
            }
            // The source becomes the VIP and virtual port.
            Engine.natRewrite(p, addressAt: 26, portAt: 34, from: srcN, sportN,
                              to: e.load(fromByteOffset: ConnField.addresses + 4, as: UInt32.self).bigEndian,
                              e.load(fromByteOffset: ConnField.vport, as: UInt16.self).bigEndian, proto: proto)
            hops[k] = client
            k += 1
            if refile { b.rearmed.pointee = e; break }
        }
        return k
    }

    /// LVS/NAT's rewrite of one endpoint (the address at `addressAt`, the
    /// port at `portAt`; old and new values raw, in network order), with TTL - 1
    /// and the IP and TCP/UDP checksums updated incrementally.
    @inline(__always)
    static func natRewrite(_ p: UnsafeMutableRawPointer, addressAt a: Int, portAt o: Int, from oldAddr: UInt32,
                           _ oldPort: UInt16, to newAddr: UInt32, _ newPort: UInt16, proto: UInt8) {
        let ttlDelta = decrementTTL(p)
        p.storeBytes(of: newAddr, toByteOffset: a, as: UInt32.self)
        p.storeBytes(of: newPort, toByteOffset: o, as: UInt16.self)
        let addrDelta = UInt64(~oldAddr) &+ UInt64(newAddr)
        adjustChecksum(p, at: 24, by: addrDelta &+ ttlDelta)
        adjustChecksum(p, at: proto == 6 ? 50 : 40, by: addrDelta &+ UInt64(~oldPort) &+ UInt64(newPort),
                       udp: proto == 17)
    }

    /// TTL - 1 (the TTL is the first byte of the header word at 22); returns
    /// the word's checksum delta (see adjustChecksum).
    @inline(__always)
    static func decrementTTL(_ p: UnsafeMutableRawPointer) -> UInt64 {
        let ttlWord = p.load(fromByteOffset: 22, as: UInt16.self)
        p.storeBytes(of: ttlWord &- Engine.ttlOne, toByteOffset: 22, as: UInt16.self)
        return UInt64(~ttlWord) &+ UInt64(ttlWord &- Engine.ttlOne)
    }

    /// TTL - 1 with the header checksum, when nothing else in the header
    /// changes: the checksum goes up by the TTL's weight with an end-around
    /// carry — RFC 1624's equation 3 for this one change, the same result
    /// bit for bit, in a few instructions (the operands are raw words).
    @inline(__always)
    static func decrementTTLOnly(_ p: UnsafeMutableRawPointer) {
        let ttlWord = p.load(fromByteOffset: 22, as: UInt16.self)
        p.storeBytes(of: ttlWord &- Engine.ttlOne, toByteOffset: 22, as: UInt16.self)
        let s = UInt32(p.load(fromByteOffset: 24, as: UInt16.self)) &+ UInt32(Engine.ttlOne)
        p.storeBytes(of: UInt16(truncatingIfNeeded: s &+ (s >= 0xFFFF ? 1 : 0)), toByteOffset: 24, as: UInt16.self)
    }

    /// The TTL's place in the raw (network-order) 16-bit word at byte 22, as loaded on this machine.
    static var ttlOne: UInt16 { UInt16(0x0100).bigEndian }

    /// RFC 1624 incremental update of the 16-bit checksum at byte `offset`:
    /// `delta` is the sum of (~old + new) over the changed words, all raw
    /// (network order as loaded: one's-complement sums do not depend on the
    /// byte order as long as every term is in the same one). A UDP checksum
    /// that comes out 0 is sent as 0xFFFF (0 means none).
    @inline(__always)
    static func adjustChecksum(_ p: UnsafeMutableRawPointer, at offset: Int, by delta: UInt64, udp: Bool = false) {
        let s = UInt64(~p.load(fromByteOffset: offset, as: UInt16.self)) &+ delta
        // 64 -> 32 bits with an end-around carry, then 32 -> 16: the high half
        // of x + (x rotated by 16) is hi + lo + the carry out of lo + hi.
        let (sum, carry) = UInt32(truncatingIfNeeded: s).addingReportingOverflow(UInt32(truncatingIfNeeded: s >> 32))
        let x = sum &+ (carry ? 1 : 0)
        var n = ~UInt16(truncatingIfNeeded: (x &+ (x << 16 | x >> 16)) >> 16)
        if udp && n == 0 { n = 0xFFFF }
        p.storeBytes(of: n, toByteOffset: offset, as: UInt16.self)
    }

    /// An IPv4 VIP's home slot in Engine.vip4 (1024 slots, linear probing).
    @inline(__always)
    static func vipSlot(_ v: UInt32) -> Int { Int((v &* 0x9E37_79B1) >> 22) }

    /// Whether an IPv4 address (host order) is in the VIP table `vips` (Engine.vip4).
    @inline(__always)
    static func isVirtualAddress4(_ v: UInt32, _ vips: UnsafeMutablePointer<UInt32>) -> Bool {
        var h = vipSlot(v)
        while true {
            let x = vips[h]
            if x == v { return v != 0 }
            if x == 0 { return false }
            h = (h + 1) & (Engine.vip4Slots - 1)
        }
    }

}

/// What pass 3 reads from the engine, copied into locals once per run:
/// stores through packet and entry pointers might alias the engine's fields,
/// so fields read through the engine would be loaded again after every store.
struct FastContext {
    let entries: UnsafeMutableRawPointer
    let destRoutes: UnsafeMutablePointer<DestRoute>
    let destStats: UnsafeMutablePointer<StatsCounters>
    let serviceStats: UnsafeMutablePointer<StatsCounters>
    let tcpMs: UInt32
    let udpMs: UInt32
    let mtu: Int
    /// Expiry (µs) of an ESTABLISHED TCP connection / a UDP one seen now.
    let tcpExpires: UInt64
    let udpExpires: UInt64

    @inline(__always)
    init(_ engine: Engine) {
        entries = engine.v4.entries
        destRoutes = engine.destRoutes
        destStats = engine.destStats
        serviceStats = engine.serviceStats
        mtu = engine.settings.mtu
        tcpMs = engine.timeoutsMs[Int(TCPState.established.rawValue)]
        udpMs = engine.timeoutsMs[TCPState.count]
        tcpExpires = engine.now &+ UInt64(tcpMs) &* 1000
        udpExpires = engine.now &+ UInt64(udpMs) &* 1000
    }

    /// An IPv4 entry (64 bytes).
    @inline(__always) func entry(_ i: UInt32) -> UnsafeMutableRawPointer { entries + Int(i) &<< 6 }

    /// Whether entry e is a live connection (not a template, not being
    /// removed) for this reply's key <client, cport, daddr, dport> (host
    /// order): pass 2's candidate may have expired, been replaced or reused since.
    @inline(__always)
    func matchesReply(_ e: UnsafeRawPointer, proto: UInt8, client: UInt32, cport: UInt16, daddr: UInt32,
                      dport: UInt16) -> Bool {
        e.load(fromByteOffset: ConnField.addresses, as: UInt32.self) == client
            && e.load(fromByteOffset: ConnField.addresses + 8, as: UInt32.self) == daddr
            && e.load(fromByteOffset: ConnField.cport, as: UInt16.self) == cport
            && e.load(fromByteOffset: ConnField.dport, as: UInt16.self) == dport
            && e.load(fromByteOffset: ConnField.proto, as: UInt8.self) == proto
            && FastContext.usable(e)
    }

    /// Whether entry e has the key of a client -> VIP packet at p, <client,
    /// cport, vaddr, vport> (whether it is live is the caller's test, with the
    /// method: see liveMethodMask). <client, VIP> and <cport, vport> lie side
    /// by side in the frame and in the entry (as host-order fields, low
    /// first), so each pair is one compare.
    @inline(__always)
    static func matchesInbound(_ e: UnsafeRawPointer, _ p: UnsafeRawPointer, proto: UInt8) -> Bool {
        let addresses = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 26, as: UInt64.self))   // src << 32 | dst
        let ports = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 34, as: UInt32.self))        // sport << 16 | dport
        return UInt64(littleEndian: e.loadUnaligned(fromByteOffset: ConnField.addresses, as: UInt64.self))
                == (addresses << 32 | addresses >> 32)
            && UInt32(littleEndian: e.load(fromByteOffset: ConnField.cport, as: UInt32.self)) == (ports << 16 | ports >> 16)
            && e.load(fromByteOffset: ConnField.proto, as: UInt8.self) == proto
    }

    /// UDP, or TCP in ESTABLISHED: the states whose packets cannot change
    /// them (the frame's flags were checked in pass 1).
    @inline(__always)
    static func established(_ e: UnsafeRawPointer, proto: UInt8) -> Bool {
        proto == 17 || e.load(fromByteOffset: ConnField.state, as: UInt8.self) == TCPState.established.rawValue
    }

    /// The flags that make an entry usable, and its method: masked with
    /// this, a live connection's flags are inUse | method.
    static let liveMethodMask = ConnFlags.inUse | ConnFlags.template | ConnFlags.dying | ConnFlags.fwdMask

    /// In use, not a template, not being removed.
    @inline(__always)
    static func usable(_ e: UnsafeRawPointer) -> Bool {
        e.load(fromByteOffset: ConnField.flags, as: UInt16.self) & (ConnFlags.inUse | ConnFlags.template | ConnFlags.dying)
            == ConnFlags.inUse
    }

    /// The per-dest and per-service packet and byte counters, when the
    /// entry's dest is available (false: not the fast path's packet).
    @inline(__always)
    func account(_ e: UnsafeMutableRawPointer, _ p: UnsafeRawPointer, inbound: Bool) -> Bool {
        let destID = FastContext.destID(e)
        guard destRoutes[destID].available else { return false }
        let bytes = UInt64(UInt16(bigEndian: p.load(fromByteOffset: 16, as: UInt16.self)))
        destStats[destID].add(bytes: bytes, inbound: inbound)
        let sid = Int(e.load(fromByteOffset: ConnField.serviceID, as: UInt32.self) & (IPVSTable.idLimit - 1))
        serviceStats[sid].add(bytes: bytes, inbound: inbound)
        return true
    }

    /// Entry e's dest id. (Ids are below IPVSTable.idLimit: the mask only
    /// keeps a corrupt entry in bounds.)
    @inline(__always)
    static func destID(_ e: UnsafeRawPointer) -> Int {
        Int(e.load(fromByteOffset: ConnField.destID, as: UInt32.self) & (IPVSTable.idLimit - 1))
    }

    /// The state's timeout from now, as set_state does on every packet. The
    /// fast path's state keeps its timeout, so the expiry only moves later
    /// and the wheel needs no visit (see ConnTable.arm); true when it moved
    /// earlier (the timeouts were shortened since) and the caller must re-file
    /// the entry with `arm`.
    @inline(__always)
    func rearm(_ e: UnsafeMutableRawPointer, proto: UInt8) -> Bool {
        let tcp = proto == 6
        let expires = tcp ? tcpExpires : udpExpires
        e.storeBytes(of: tcp ? tcpMs : udpMs, toByteOffset: ConnField.timeout, as: UInt32.self)
        let later = expires >= e.load(fromByteOffset: ConnField.expires, as: UInt64.self)
        e.storeBytes(of: expires, toByteOffset: ConnField.expires, as: UInt64.self)
        return !later
    }
}
