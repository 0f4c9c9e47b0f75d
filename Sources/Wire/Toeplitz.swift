// The Toeplitz hash NICs use for RSS, in software, so a worker can tell which
// queue (and so which lcore) the NIC would deliver a client's packets to.
//
// Bit i of the input, when set, XORs in the 32 key bits starting at key bit i.
// The per-bit work is folded into one 256-entry table per input byte
// position, so a hash costs one load and one XOR per input byte.

public struct ToeplitzHasher {
    /// The key Switchyard programs into NICs: a symmetric-friendly 40-byte key
    /// (any key works for ownership as long as NIC and mirror agree).
    public static let defaultKey: [UInt8] = [
        0x6D, 0x5A, 0x56, 0xDA, 0x25, 0x5B, 0x0E, 0xC2, 0x41, 0x67,
        0x25, 0x3D, 0x43, 0xA3, 0x8F, 0xB0, 0xD0, 0xCA, 0x2B, 0xCB,
        0xAE, 0x7B, 0x30, 0xB4, 0x77, 0xCB, 0x2D, 0xA3, 0x80, 0x30,
        0xF2, 0x0C, 0x6A, 0x42, 0xB7, 0x3B, 0xBE, 0xAC, 0x01, 0xFA,
    ]

    public let inputLength: Int
    let table: UnsafeMutablePointer<UInt32>   // inputLength × 256

    public init(key: [UInt8] = ToeplitzHasher.defaultKey, inputLength: Int) {
        precondition(key.count * 8 >= inputLength * 8 + 32, "Toeplitz key too short for the input")
        self.inputLength = inputLength
        table = .allocate(capacity: inputLength * 256)
        // The 32-bit window of the key starting at bit `bit`.
        func window(_ bit: Int) -> UInt32 {
            var w: UInt32 = 0
            for k in 0..<32 {
                let b = bit + k
                let set = (key[b / 8] >> (7 - UInt8(b % 8))) & 1
                w = (w << 1) | UInt32(set)
            }
            return w
        }
        for pos in 0..<inputLength {
            var windows = [UInt32](repeating: 0, count: 8)
            for j in 0..<8 { windows[j] = window(pos * 8 + j) }
            for v in 0..<256 {
                var h: UInt32 = 0
                for j in 0..<8 where (v >> (7 - j)) & 1 == 1 { h ^= windows[j] }
                table[pos * 256 + v] = h
            }
        }
    }

    /// Hash `inputLength` bytes at p (network order, as the NIC reads them).
    @inline(__always)
    public func hash(_ p: UnsafeRawPointer) -> UInt32 {
        var h: UInt32 = 0
        for i in 0..<inputLength { h ^= table[i * 256 + Int(p.load(fromByteOffset: i, as: UInt8.self))] }
        return h
    }

    /// Hash of <address, port> laid out as the NIC's L3_SRC_ONLY|L4_SRC_ONLY
    /// (or DST_ONLY) input: the address bytes, then the port, big-endian.
    @inline(__always)
    public func hash(address a: IPAddress, port: UInt16) -> UInt32 {
        var h: UInt32 = 0
        var pos = 0
        if a.isV4 {
            let v = a.v4
            h ^= table[0 * 256 + Int(v >> 24)]
            h ^= table[1 * 256 + Int((v >> 16) & 0xFF)]
            h ^= table[2 * 256 + Int((v >> 8) & 0xFF)]
            h ^= table[3 * 256 + Int(v & 0xFF)]
            pos = 4
        } else {
            for k in 0..<8 { h ^= table[k * 256 + Int((a.hi >> UInt64(56 - 8 * k)) & 0xFF)] }
            for k in 0..<8 { h ^= table[(8 + k) * 256 + Int((a.lo >> UInt64(56 - 8 * k)) & 0xFF)] }
            pos = 16
        }
        h ^= table[pos * 256 + Int(port >> 8)]
        h ^= table[(pos + 1) * 256 + Int(port & 0xFF)]
        return h
    }

    /// The same, bit by bit (the definition; used to check the tables).
    public static func reference(key: [UInt8], input: [UInt8]) -> UInt32 {
        var h: UInt32 = 0
        for i in 0..<(input.count * 8) where (input[i / 8] >> (7 - UInt8(i % 8))) & 1 == 1 {
            var w: UInt32 = 0
            for k in 0..<32 {
                let b = i + k
                w = (w << 1) | UInt32((key[b / 8] >> (7 - UInt8(b % 8))) & 1)
            }
            h ^= w
        }
        return h
    }
}
