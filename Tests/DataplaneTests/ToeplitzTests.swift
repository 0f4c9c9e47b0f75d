import CDPDK
import Wire
import XCTest

/// The software RSS mirror must agree with DPDK's own Toeplitz (rte_softrss),
/// which is what NICs implement, bit for bit.
final class ToeplitzTests: XCTestCase {
    let key = ToeplitzHasher.defaultKey

    func softrss(_ bytes: [UInt8]) -> UInt32 {
        // rte_softrss takes host-order 32-bit words of the (padded) input.
        var words = [UInt32](repeating: 0, count: (bytes.count + 3) / 4)
        for (i, b) in bytes.enumerated() { words[i / 4] |= UInt32(b) << UInt32(24 - 8 * (i % 4)) }
        return key.withUnsafeBufferPointer { k in
            words.withUnsafeBufferPointer { w in sy_softrss(w.baseAddress, UInt32(w.count), k.baseAddress) }
        }
    }

    func testIPv4EndpointsMatchSoftRSS() {
        let h = ToeplitzHasher(key: key, inputLength: 18)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            let a = UInt32.random(in: 0...UInt32.max, using: &rng)
            let port = UInt16.random(in: 0...UInt16.max, using: &rng)
            let bytes: [UInt8] = [UInt8(a >> 24), UInt8((a >> 16) & 255), UInt8((a >> 8) & 255), UInt8(a & 255),
                                  UInt8(port >> 8), UInt8(port & 255), 0, 0]
            // Padding zeros do not change a Toeplitz hash.
            XCTAssertEqual(h.hash(address: IPAddress(v4: a), port: port), softrss(bytes))
        }
    }

    func testIPv6EndpointsMatchSoftRSS() {
        let h = ToeplitzHasher(key: key, inputLength: 18)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<5_000 {
            let hi = UInt64.random(in: 0...UInt64.max, using: &rng)
            let lo = UInt64.random(in: 0...UInt64.max, using: &rng)
            let port = UInt16.random(in: 0...UInt16.max, using: &rng)
            var bytes: [UInt8] = []
            for k in 0..<8 { bytes.append(UInt8((hi >> UInt64(56 - 8 * k)) & 255)) }
            for k in 0..<8 { bytes.append(UInt8((lo >> UInt64(56 - 8 * k)) & 255)) }
            bytes += [UInt8(port >> 8), UInt8(port & 255), 0, 0]
            XCTAssertEqual(h.hash(address: IPAddress(hi: hi, lo: lo, family: .inet6), port: port), softrss(bytes))
        }
    }

    func testTableHashEqualsTheBitwiseDefinition() {
        let h = ToeplitzHasher(key: key, inputLength: 12)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let input = (0..<12).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let got = input.withUnsafeBytes { h.hash($0.baseAddress!) }
            XCTAssertEqual(got, ToeplitzHasher.reference(key: key, input: input))
            XCTAssertEqual(got, softrss(input))
        }
    }

    /// The test vector from Microsoft's RSS verification suite (IPv4 with
    /// ports, 66.9.149.187:2794 -> 161.142.100.80:1766), which DPDK's tests use too.
    func testKnownVector() {
        let input: [UInt8] = [66, 9, 149, 187, 161, 142, 100, 80, 0x0A, 0xEA, 0x06, 0xE6]
        XCTAssertEqual(ToeplitzHasher.reference(key: key, input: input), 0x51CC_C178)
    }
}
