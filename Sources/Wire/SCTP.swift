// SCTP's CRC32c (Castagnoli) checksum, needed when NAT changes an SCTP port.

public enum SCTP {
    /// 256-entry table for the reflected Castagnoli polynomial, built once.
    @usableFromInline
    static let table: UnsafePointer<UInt32> = {
        let t = UnsafeMutablePointer<UInt32>.allocate(capacity: 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        return UnsafePointer(t)
    }()

    /// CRC32c of `length` bytes (initial value all ones, final complement).
    public static func crc32c(_ p: UnsafeRawPointer, length: Int, seed: UInt32 = 0) -> UInt32 {
        let t = table
        var c = ~seed
        for i in 0..<length {
            c = t[Int((c ^ UInt32(rd8(p, i))) & 0xFF)] ^ (c >> 8)
        }
        return ~c
    }

    /// Computes the checksum of the SCTP packet (common header at `p`,
    /// `length` bytes, at least 12) with its checksum field as zero.
    public static func checksum(_ p: UnsafeRawPointer, length: Int) -> UInt32 {
        var c = crc32c(p, length: 8)
        let zero: UInt32 = 0
        c = withUnsafeBytes(of: zero) { crc32c($0.baseAddress!, length: 4, seed: c) }
        return crc32c(p + 12, length: length - 12, seed: c)
    }

    /// Stores the checksum (its bytes in little-endian order, as SCTP does).
    public static func setChecksum(_ p: UnsafeMutableRawPointer, length: Int) {
        guard length >= 12 else { return }
        p.storeBytes(of: checksum(p, length: length).littleEndian, toByteOffset: 8, as: UInt32.self)
    }

    public static func verify(_ p: UnsafeRawPointer, length: Int) -> Bool {
        guard length >= 12 else { return false }
        return UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) == checksum(p, length: length)
    }
}
