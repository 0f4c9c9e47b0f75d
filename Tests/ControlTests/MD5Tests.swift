import XCTest
@testable import Control

final class MD5Tests: XCTestCase {
    /// RFC 1321 appendix A.5 test suite.
    func testRFC1321Vectors() {
        let vectors: [(String, String)] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            ("12345678901234567890123456789012345678901234567890123456789012345678901234567890",
             "57edf4a22be3c955ac49da2e2107b67a"),
        ]
        for (input, digest) in vectors {
            XCTAssertEqual(MD5.hex(input), digest, "MD5(\"\(input)\")")
        }
    }

    func testBlockBoundariesAndIncrementalUpdates() {
        // Lengths around the 56/64-byte padding edges, fed in odd pieces.
        let known: [Int: String] = [
            55: "ef1772b6dff9a122358552954ad0df65",   // 55 × "a"
            56: "3b0c8ac703f828b04c6c197006d17218",
            63: "b06521f39153d618550606be297466d5",
            64: "014842d480b571495a4a0363793f7367",
            65: "c743a45e0d2e6a95cb859adae0248435",
        ]
        for (n, want) in known {
            let bytes = [UInt8](repeating: UInt8(ascii: "a"), count: n)
            XCTAssertEqual(MD5.hex(bytes), want, "\(n) × a")
            var h = MD5()
            var i = 0
            var step = 1
            while i < n {
                let j = min(n, i + step)
                h.update(bytes[i..<j])
                i = j
                step += 3
            }
            XCTAssertEqual(MD5.hexString(h.finish()), want, "\(n) × a in pieces")
        }
        // A million "a" (a classic extra vector).
        XCTAssertEqual(MD5.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)), "7707d6ae4e027c70eea2a935c2296f21")
    }
}
