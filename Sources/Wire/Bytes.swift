// Big-endian field access on raw packet memory. Every caller checks bounds
// before it calls these; they never check anything themselves.

@usableFromInline @inline(__always)
func rd8(_ p: UnsafeRawPointer, _ o: Int) -> UInt8 {
    p.load(fromByteOffset: o, as: UInt8.self)
}

@usableFromInline @inline(__always)
func rd16(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 {
    UInt16(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt16.self))
}

@usableFromInline @inline(__always)
func rd32(_ p: UnsafeRawPointer, _ o: Int) -> UInt32 {
    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self))
}

@usableFromInline @inline(__always)
func rd64(_ p: UnsafeRawPointer, _ o: Int) -> UInt64 {
    UInt64(bigEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self))
}

@usableFromInline @inline(__always)
func wr8(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt8) {
    p.storeBytes(of: v, toByteOffset: o, as: UInt8.self)
}

@usableFromInline @inline(__always)
func wr16(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt16) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self)
}

@usableFromInline @inline(__always)
func wr32(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt32) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt32.self)
}

@usableFromInline @inline(__always)
func wr64(_ p: UnsafeMutableRawPointer, _ o: Int, _ v: UInt64) {
    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt64.self)
}

/// Reads an address of `family` stored in wire order at `p + o`.
@usableFromInline @inline(__always)
func rdAddr(_ p: UnsafeRawPointer, _ o: Int, v6: Bool) -> IPAddress {
    if v6 {
        return IPAddress(hi: rd64(p, o), lo: rd64(p, o + 8), family: .inet6)
    }
    return IPAddress(hi: 0, lo: UInt64(rd32(p, o)), family: .inet)
}

/// Writes an address in wire order (4 or 16 bytes) at `p + o`.
@usableFromInline @inline(__always)
func wrAddr(_ p: UnsafeMutableRawPointer, _ o: Int, _ a: IPAddress) {
    if a.family == .inet6 {
        wr64(p, o, a.hi)
        wr64(p, o + 8, a.lo)
    } else {
        wr32(p, o, UInt32(truncatingIfNeeded: a.lo))
    }
}

/// Byte copy that tolerates overlap (memmove semantics).
@usableFromInline @inline(__always)
func moveBytes(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ n: Int) {
    if n > 0 { dst.copyMemory(from: src, byteCount: n) }
}

@usableFromInline @inline(__always)
func zeroBytes(_ dst: UnsafeMutableRawPointer, _ n: Int) {
    var i = 0
    while i + 8 <= n { dst.storeBytes(of: 0 as UInt64, toByteOffset: i, as: UInt64.self); i += 8 }
    while i < n { dst.storeBytes(of: 0 as UInt8, toByteOffset: i, as: UInt8.self); i += 1 }
}
