// IPv4 fragmentation (RFC 791) for an oversize packet without DF: the data
// plane asks for the count, allocates one buffer per fragment, and has each
// written by `writeFragment`.

public enum Fragmenter {
    /// Length of the header later fragments carry: 20 plus the options whose
    /// copy flag is set, padded to a multiple of 4. A malformed option list
    /// ends the walk (nothing after it is copied).
    @inlinable
    public static func laterHeaderLength(_ p: UnsafeRawPointer, info: PacketInfo) -> Int {
        20 + ((copiedOptions(p, info: info, into: nil) + 3) & ~3)
    }

    /// Walks the options of the header at `info.l3Offset`; writes the copied
    /// ones at `dst` when given. Returns their byte count (unpadded).
    @inlinable
    static func copiedOptions(_ p: UnsafeRawPointer, info: PacketInfo, into dst: UnsafeMutableRawPointer?) -> Int {
        let base = info.l3Offset + 20
        let n = info.ipHeaderLength - 20
        var i = 0, out = 0
        while i < n {
            let t = rd8(p, base + i)
            if t == 0 { break }
            if t == 1 { i += 1; continue }
            guard n - i >= 2 else { break }
            let l = Int(rd8(p, base + i + 1))
            guard l >= 2, l <= n - i else { break }
            if t & 0x80 != 0 {
                if let d = dst { moveBytes(d + out, p + base + i, l) }
                out += l
            }
            i += l
        }
        return out
    }

    /// Number of fragments for an IPv4 packet of `info` on a link of IP MTU
    /// `mtu`: 1 when it fits, 0 for non-IPv4 or an MTU too small to carry 8
    /// data bytes per fragment.
    @inlinable
    public static func fragmentCount(_ p: UnsafeRawPointer, info: PacketInfo, mtu: Int) -> Int {
        guard info.ipVersion == 4 else { return 0 }
        if info.ipTotalLength <= mtu { return 1 }
        let first = (mtu - info.ipHeaderLength) & ~7
        let later = (mtu - laterHeaderLength(p, info: info)) & ~7
        guard first >= 8, later >= 8 else { return 0 }
        let payload = info.ipTotalLength - info.ipHeaderLength
        if payload <= first { return 1 }
        return 1 + (payload - first + later - 1) / later
    }

    /// Writes fragment `index` (0-based) of the packet `frame` (parsed as
    /// `info`) into `dst`: a copy of the L2 header, the IP header (the first
    /// fragment keeps all options, later ones only copied options), the
    /// slice of data, offsets relative to the packet's own fragment offset,
    /// MF on all but the last (which keeps the original MF), a fresh header
    /// checksum. Returns the frame length, or 0 if `index` is out of range
    /// or `capacity` is too small.
    @inlinable
    public static func writeFragment(from frame: UnsafeRawPointer, info: PacketInfo, index: Int, mtu: Int,
                                     into dst: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let count = fragmentCount(frame, info: info, mtu: mtu)
        guard index >= 0, index < count else { return 0 }
        let l2 = info.l3Offset
        let ihl = info.ipHeaderLength
        let payload = info.ipTotalLength - ihl
        if count == 1 {
            let n = l2 + info.ipTotalLength
            guard capacity >= n else { return 0 }
            moveBytes(dst, frame, n)
            return n
        }
        let first = (mtu - ihl) & ~7
        let laterHL = laterHeaderLength(frame, info: info)
        let later = (mtu - laterHL) & ~7
        let start = index == 0 ? 0 : first + (index - 1) * later
        let len = min(payload - start, index == 0 ? first : later)
        let hl = index == 0 ? ihl : laterHL
        let n = l2 + hl + len
        guard capacity >= n else { return 0 }
        moveBytes(dst, frame, l2 + 20)
        if index == 0 {
            moveBytes(dst + l2 + 20, frame + l2 + 20, ihl - 20)
        } else {
            let o = copiedOptions(frame, info: info, into: dst + l2 + 20)
            zeroBytes(dst + l2 + 20 + o, hl - 20 - o)
        }
        moveBytes(dst + l2 + hl, frame + l2 + ihl + start, len)
        let h = dst + l2
        wr8(h, 0, 0x40 | UInt8(hl / 4))
        wr16(h, 2, UInt16(truncatingIfNeeded: hl + len))
        let last = index == count - 1
        let mf = !last || info.moreFragments
        let off = (info.fragmentOffset + start) / 8
        wr16(h, 6, (info.dfSet ? 0x4000 : 0) | (mf ? 0x2000 : 0) | UInt16(truncatingIfNeeded: off & 0x1FFF))
        Checksum.setIPv4Header(dst, l3: l2)
        return n
    }
}
