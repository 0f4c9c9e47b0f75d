// RSS-consistent ownership: every connection belongs to the worker whose rx
// queue the NIC picks for the client's <address, port>. Client packets hash
// on their source, a real server's NAT replies on their destination, with
// the same key and redirection table, so both directions of a connection
// reach one worker and its table has a single writer.
//
// Where the NIC cannot be told to hash that way (virtual devices, PMDs
// without the SRC_ONLY/DST_ONLY types), a packet may arrive on another
// worker: the software mirror of key and table finds the owner and the packet
// travels there over a single-producer, single-consumer ring, counted.
import CDPDK
import Wire

public final class Steering: @unchecked Sendable {
    public let workers: Int
    let hasher: ToeplitzHasher
    let reta: UnsafeMutablePointer<UInt16>
    let retaMask: Int
    /// Queue number -> worker index.
    let queueWorker: UnsafeMutablePointer<Int>
    /// rings[from * workers + to]
    let rings: UnsafeMutablePointer<OpaquePointer?>

    public static let defaultRingSize = 4096

    /// Queue q of every port is polled by worker `queueToWorker[q]`; the
    /// redirection table spreads hashes over `queues` queues round robin.
    public init(workers: Int, queues: Int, queueToWorker: [Int], retaSize: Int, ringSize: Int = Steering.defaultRingSize) throws {
        self.workers = workers
        hasher = ToeplitzHasher(key: ToeplitzHasher.defaultKey, inputLength: 18)
        var size = 128
        while size < retaSize { size <<= 1 }
        retaMask = size - 1
        reta = .allocate(capacity: size)
        for i in 0..<size { reta[i] = UInt16(i % max(queues, 1)) }
        queueWorker = .allocate(capacity: max(queues, 1))
        for q in 0..<max(queues, 1) { queueWorker[q] = q < queueToWorker.count ? queueToWorker[q] : 0 }
        rings = .allocate(capacity: workers * workers)
        rings.initialize(repeating: nil, count: workers * workers)
        for from in 0..<workers {
            for to in 0..<workers where from != to {
                // rte_ring needs a power of two; usable size is count - 1.
                var n = 2
                while n < ringSize + 1 { n <<= 1 }
                guard let r = sy_ring_create("sy_redirect_\(from)_\(to)", UInt32(n), sy_socket_id(), true, true) else {
                    throw DataplaneError("cannot create the redirect ring \(from)->\(to): \(String(cString: sy_strerror_last()))")
                }
                rings[from * workers + to] = r
            }
        }
    }

    /// The redirection table as programmed into the NICs.
    public var table: [UInt16] { (0...retaMask).map { reta[$0] } }

    /// The worker that owns connections of this client endpoint.
    @inline(__always)
    public func owner(address: IPAddress, port: UInt16) -> Int {
        let h = hasher.hash(address: address, port: port)
        return queueWorker[Int(reta[Int(h) & retaMask])]
    }

    @inline(__always)
    public func ring(from: Int, to: Int) -> OpaquePointer? { rings[from * workers + to] }

    /// Program key, hash types and redirection table into a port, best effort.
    /// Client-facing traffic must hash on source fields and server-facing on
    /// destination fields; a port carrying both needs rte_flow rules, which
    /// Switchyard does not install yet, so it programs source hashing there.
    public func programPort(_ port: UInt16, destinationSide: Bool) -> Bool {
        let key = ToeplitzHasher.defaultKey
        let size = Int(sy_port_reta_size(port))
        var entries = [UInt16](repeating: 0, count: max(size, 1))
        for i in 0..<size { entries[i] = reta[i & retaMask] }
        let types = destinationSide ? sy_rss_types_dst_only() : sy_rss_types_src_only()
        return key.withUnsafeBufferPointer { k in
            entries.withUnsafeBufferPointer { e in
                sy_port_rss_configure(port, k.baseAddress, UInt8(key.count), types, e.baseAddress, UInt16(size)) == 0
            }
        }
    }
}
