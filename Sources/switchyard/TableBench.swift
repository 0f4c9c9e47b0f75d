// `switchyard bench-table [N]`: the connection table against DPDK's rte_hash,
// on the same N IPv4 connection keys, in bursts of 32 random lookups (hits),
// as the data plane does them. Prints nanoseconds per lookup for each.
import CDPDK
import Dataplane
import IPVS
#if canImport(Glibc)
import Glibc
#endif

enum TableBench {
    static func main(_ args: [String]) -> Int32 {
        let n = args.first.flatMap { Int($0) } ?? 1_000_000
        let lookups = 20_000_000
        let words: [String] = ["switchyard", "--no-huge", "-m", String(max(512, n / 1000 + 512)), "--no-pci",
                               "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error", "-l", "0"]
        var eal: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) }
        guard eal.withUnsafeMutableBufferPointer({ sy_eal_init(Int32($0.count), $0.baseAddress) }) >= 0 else {
            FileHandleOut.stderr("bench-table: EAL initialisation failed\n")
            return 1
        }
        // Keys: client 198.18.x.y:port -> VIP 192.0.2.10:53, UDP, as 16 bytes for rte_hash.
        func client(_ i: Int) -> UInt32 { 0xC612_0000 &+ UInt32(i % 65521) }
        func cport(_ i: Int) -> UInt16 { UInt16(truncatingIfNeeded: 1024 + i / 65521) }
        let vip: UInt32 = 0xC000_020A
        var rng = SystemRandomNumberGenerator()
        let order = UnsafeMutablePointer<Int>.allocate(capacity: lookups)
        for k in 0..<lookups { order[k] = Int.random(in: 0..<n, using: &rng) }
        let hz = Double(sy_tsc_hz())

        // Switchyard's table: 64-byte entries, bucketed index, two-stage prefetch per burst.
        var t = ConnTable(capacity: n + n / 8, isV6: false)
        for i in 0..<n {
            _ = t.insert(proto: 17, caddr: IPAddress(v4: client(i)), cport: cport(i), vaddr: IPAddress(v4: vip),
                         vport: 53, daddr: IPAddress(v4: 0x0A00_000B), dport: 53, flags: 0)
        }
        var found = 0
        let hashes = UnsafeMutablePointer<UInt32>.allocate(capacity: 32)
        let cands = UnsafeMutablePointer<UnsafeRawPointer>.allocate(capacity: 256)
        var start = sy_rdtsc()
        var k = 0
        while k < lookups {
            for j in 0..<32 {
                let i = order[k + j]
                hashes[j] = t.hash4(proto: 17, client: client(i), port: cport(i))
                sy_prefetch0(t.bucketAddress(for: hashes[j]))
            }
            let c = t.candidateEntries(hashes, count: 32, into: cands, capacity: 256)
            for j in 0..<c { sy_prefetch0(cands[j]) }
            for j in 0..<32 {
                let i = order[k + j]
                if t.lookup4(proto: 17, client: client(i), cport: cport(i), addr: vip, port: 53, daddrSide: false,
                             hash: hashes[j]) != nil { found += 1 }
            }
            k += 32
        }
        let ours = Double(sy_rdtsc() &- start) / hz * 1e9 / Double(lookups)
        let oursFound = found

        // The same keys one by one, without the burst prefetch.
        found = 0
        start = sy_rdtsc()
        for k in 0..<lookups {
            let i = order[k]
            if t.lookup4(proto: 17, client: client(i), cport: cport(i), addr: vip, port: 53, daddrSide: false) != nil {
                found += 1
            }
        }
        let oursPlain = Double(sy_rdtsc() &- start) / hz * 1e9 / Double(lookups)

        // rte_hash: 16-byte keys {proto, cport, vport, caddr, vaddr, pad}, bulk lookups of 32.
        guard let h = sy_hash_create("sy_bench", UInt32(n + n / 8), 16) else {
            FileHandleOut.stderr("bench-table: rte_hash_create failed: \(String(cString: sy_strerror_last()))\n")
            return 1
        }
        let keys = UnsafeMutableRawPointer.allocate(byteCount: n * 16, alignment: 16)
        for i in 0..<n {
            let kp = keys + i * 16
            kp.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
            kp.storeBytes(of: UInt32(17), as: UInt32.self)
            kp.storeBytes(of: cport(i), toByteOffset: 4, as: UInt16.self)
            kp.storeBytes(of: UInt16(53), toByteOffset: 6, as: UInt16.self)
            kp.storeBytes(of: client(i), toByteOffset: 8, as: UInt32.self)
            kp.storeBytes(of: vip, toByteOffset: 12, as: UInt32.self)
            _ = sy_hash_add(h, kp)
        }
        let burst = UnsafeMutablePointer<UnsafeRawPointer?>.allocate(capacity: 32)
        let pos = UnsafeMutablePointer<Int32>.allocate(capacity: 32)
        found = 0
        start = sy_rdtsc()
        k = 0
        while k < lookups {
            for j in 0..<32 { burst[j] = UnsafeRawPointer(keys + order[k + j] * 16) }
            _ = sy_hash_lookup_bulk(h, burst, 32, pos)
            for j in 0..<32 where pos[j] >= 0 { found += 1 }
            k += 32
        }
        let theirs = Double(sy_rdtsc() &- start) / hz * 1e9 / Double(lookups)
        let theirsFound = found

        // rte_hash gives a position only: the connection's state (a 64-byte
        // entry per position) is one more line to read, as the data plane must.
        let state = UnsafeMutableRawPointer.allocate(byteCount: (n + n / 8 + 64) * 64, alignment: 64)
        state.initializeMemory(as: UInt8.self, repeating: 1, count: (n + n / 8 + 64) * 64)
        var sum = 0
        start = sy_rdtsc()
        k = 0
        while k < lookups {
            for j in 0..<32 { burst[j] = UnsafeRawPointer(keys + order[k + j] * 16) }
            _ = sy_hash_lookup_bulk(h, burst, 32, pos)
            for j in 0..<32 where pos[j] >= 0 { sy_prefetch0(state + Int(pos[j]) * 64) }
            for j in 0..<32 where pos[j] >= 0 { sum &+= Int(state.load(fromByteOffset: Int(pos[j]) * 64, as: UInt8.self)) }
            k += 32
        }
        let theirsWithState = Double(sy_rdtsc() &- start) / hz * 1e9 / Double(lookups)
        sy_hash_free(h)
        FileHandleOut.stdout("""
        bench-table: \(n) connections, \(lookups) random lookups (all hits), one core
        switchyard table, bursts of 32 with prefetch: \(fmt(ours)) ns/lookup (\(oursFound) found)
        switchyard table, one at a time:              \(fmt(oursPlain)) ns/lookup
        rte_hash (CRC32), rte_hash_lookup_bulk of 32: \(fmt(theirs)) ns/lookup (\(theirsFound) found)
        rte_hash bulk + reading the entry's state:    \(fmt(theirsWithState)) ns/lookup (\(sum) bytes read)

        """)
        _ = sy_eal_cleanup()
        return 0
    }

    static func fmt(_ v: Double) -> String {
        let x = (v * 10).rounded() / 10
        return String(x)
    }
}
