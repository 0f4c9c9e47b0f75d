// The process-level data plane: EAL, the packet pool, ports and queues,
// worker lcores, the main lcore's housekeeping (counters, idle exit) and a
// clean shutdown (net_pcap writes its tx_pcap only when the port closes).
import CDPDK

#if canImport(Glibc)
import Glibc
#endif

public final class Runtime: @unchecked Sendable {
    public let options: Options
    public private(set) var ports: [PortDescription] = []
    public private(set) var workers: [WorkerContext] = []
    public let counters: CounterBlock
    public private(set) var pool: OpaquePointer?
    /// True when a worker runs on the main lcore (EAL gave a single lcore).
    public let mainPolls: Bool
    let workerLcores: [UInt32]
    private var startTSC: UInt64 = 0
    private var lastStats: (tsc: UInt64, ports: [PortStats], workers: [WorkerCounters])
    /// Called on the main lcore about every millisecond (admin socket, timers).
    public var housekeeping: (() -> Void)?

    /// Initialise EAL with `ealArgs` (argv[0] first) and set up ports and
    /// workers. Throws with a message suitable for the user.
    public init(ealArgs: [String], options: Options, reasonCount: Int) throws {
        self.options = options
        var cargs = ealArgs.map { strdup($0) }
        let rc = cargs.withUnsafeMutableBufferPointer { buf in
            sy_eal_init(Int32(buf.count), buf.baseAddress)
        }
        if rc < 0 { throw DataplaneError("EAL initialisation failed: \(String(cString: sy_strerror_last()))") }

        // Workers: every lcore but the main one, or the main one alone.
        var lcores: [UInt32] = []
        var l = sy_next_worker_lcore(UInt32.max)
        while l < UInt32(RTE_MAX_LCORE) {
            lcores.append(l)
            l = sy_next_worker_lcore(l)
        }
        if lcores.isEmpty {
            mainPolls = true
            lcores = [sy_main_lcore()]
        } else {
            mainPolls = false
        }
        if let nb = options.nbCores {
            guard nb <= lcores.count else {
                throw DataplaneError("--nb-cores \(nb) exceeds the \(lcores.count) worker lcore(s) EAL provides (use -l/--lcores)")
            }
            lcores = Array(lcores.prefix(nb))
        }
        workerLcores = lcores
        counters = CounterBlock(workers: lcores.count, reasonCount: reasonCount)
        lastStats = (0, [], [])

        var portIDs = Ports.available()
        if let mask = options.portmask {
            portIDs = portIDs.filter { $0 < 64 && (mask >> UInt64($0)) & 1 == 1 }
        }
        guard !portIDs.isEmpty else {
            throw DataplaneError("no ports: give at least one device (e.g. --vdev net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap) or check --portmask")
        }
        for p in portIDs {
            guard let d = Ports.describe(p) else { throw DataplaneError("port \(p): cannot read device info") }
            ports.append(d)
        }
        try validateLcoreMap(portIDs)
        try setUpPorts(portIDs)
        if options.exceptionPath == .tap { try setUpExceptionPorts() }
        assignQueues(portIDs)
    }

    /// `--lcore-map` must name existing ports, queues below --rxq and worker
    /// lcores, each (port, queue) once; and a queue number must be polled by
    /// one lcore on every port, which RSS-consistent ownership relies on.
    private func validateLcoreMap(_ portIDs: [UInt16]) throws {
        var seen = Set<UInt32>()
        var queueLcore: [UInt16: UInt32] = [:]
        for (p, q, l) in options.lcoreMap {
            guard portIDs.contains(p) else { throw DataplaneError("--lcore-map: (\(p),\(q),\(l)): port \(p) is not in use") }
            guard Int(q) < options.rxq else {
                throw DataplaneError("--lcore-map: (\(p),\(q),\(l)): queue \(q) does not exist (--rxq \(options.rxq))")
            }
            guard workerLcores.contains(l) else {
                throw DataplaneError("--lcore-map: (\(p),\(q),\(l)): lcore \(l) is not a worker lcore (workers: \(workerLcores.map(String.init).joined(separator: ",")))")
            }
            guard seen.insert(UInt32(p) << 16 | UInt32(q)).inserted else {
                throw DataplaneError("--lcore-map: port \(p) queue \(q) is mapped twice")
            }
            if let other = queueLcore[q], other != l {
                throw DataplaneError("--lcore-map: queue \(q) is polled by lcore \(other) on one port and lcore \(l) on another; a queue number must belong to one lcore on every port (connections are owned per queue)")
            }
            queueLcore[q] = l
        }
    }

    /// The exception path: a TAP port per data port (kernel interface syP,
    /// same MAC), data port -> TAP port and back.
    public private(set) var exceptionPorts: [(data: UInt16, tap: UInt16, iface: String)] = []

    private func setUpExceptionPorts() throws {
        let txq = options.txq ?? workerLcores.count
        for d in ports {
            let iface = "sy\(d.id)"
            let name = "net_tap_sy\(d.id)"
            var tap: UInt16 = 0
            let rc = sy_vdev_create("\(name),iface=\(iface),mac=\(d.mac)", name, &tap)
            guard rc == 0 else {
                throw DataplaneError("--exception-path tap: cannot create \(iface) for port \(d.id): \(String(cString: strerror(-rc))) (needs /dev/net/tun and root)")
            }
            let rc2 = sy_port_setup(tap, 1, UInt16(txq), 512, 512, pool, UInt32(options.maxPktLen), false, false)
            guard rc2 == 0 else {
                throw DataplaneError("--exception-path tap: cannot start \(iface): \(String(cString: strerror(-rc2)))")
            }
            exceptionPorts.append((d.id, tap, iface))
        }
    }

    private func setUpPorts(_ portIDs: [UInt16]) throws {
        let txq = options.txq ?? workerLcores.count
        guard txq >= workerLcores.count else {
            throw DataplaneError("--txq \(txq) is less than the \(workerLcores.count) workers: each worker needs its own tx queue per port")
        }
        let perPort = options.rxq * options.rxd + txq * options.txd
        let needed = portIDs.count * perPort + workerLcores.count * (256 + options.burst * 4) + 4096
        let n = options.totalNumMbufs ?? max(8192, needed)
        pool = sy_pktmbuf_pool_create("sy_mbuf_pool", UInt32(n), 256, UInt16(options.mbufSize), sy_socket_id())
        guard pool != nil else {
            throw DataplaneError("cannot create a pool of \(n) mbufs of \(options.mbufSize) bytes: \(String(cString: sy_strerror_last())) (raise -m, or lower --total-num-mbufs)")
        }
        for d in ports {
            if options.rxq > d.maxRxQueues {
                throw DataplaneError("port \(d.id) (\(d.driver)): --rxq \(options.rxq) exceeds its \(d.maxRxQueues) rx queues")
            }
            if txq > d.maxTxQueues {
                throw DataplaneError("port \(d.id) (\(d.driver)): \(txq) tx queues exceed its \(d.maxTxQueues)")
            }
            // net_pcap stamps every packet with its capture time without
            // advertising the offload; other devices must advertise it.
            if options.clock == .packet && !d.timestampCapable && d.driver != "net_pcap" {
                throw DataplaneError("--clock packet needs rx timestamps, and port \(d.id) (\(d.driver)) does not provide them")
            }
            let rc = sy_port_setup(d.id, UInt16(options.rxq), UInt16(txq), UInt16(options.rxd), UInt16(options.txd),
                                   pool, UInt32(options.maxPktLen), options.clock == .packet && d.timestampCapable, true)
            if rc != 0 {
                throw DataplaneError("port \(d.id) (\(d.driver)): set-up failed: \(String(cString: strerror(-rc)))")
            }
        }
        if options.clock == .packet && sy_timestamp_lookup() < 0 {
            throw DataplaneError("--clock packet: the rx timestamp field is not available")
        }
    }

    /// Idle back-off: explicit setting, else on (500 µs) when every port is a
    /// virtual device (no PCI NIC), where sharing the host matters more than
    /// the last microsecond of latency.
    var idleSleepCeiling: Int {
        switch options.idleBackoff {
        case .off?: return 0
        case .on(let us)?: return us
        case nil:
            let virtualDrivers = ["net_pcap", "net_null", "net_ring", "net_af_packet", "net_tap", "net_memif",
                                  "net_virtio_user", "net_af_xdp", "net_vhost"]
            return ports.allSatisfy { virtualDrivers.contains($0.driver) } ? 500 : 0
        }
    }

    /// Queue q of every port goes to worker q mod workers (so a queue number
    /// means one worker on every port, which RSS ownership relies on);
    /// worker i transmits on queue i of every port.
    private func assignQueues(_ portIDs: [UInt16]) {
        var lists = [[RxAssignment]](repeating: [], count: workerLcores.count)
        for q in 0..<options.rxq {
            for p in portIDs {
                lists[workerIndex(forQueue: q, port: p)].append(RxAssignment(port: p, queue: UInt16(q)))
            }
        }
        // The kernel's packets (TAP rx) are read by the first worker.
        for e in exceptionPorts { lists[0].append(RxAssignment(port: e.tap, queue: 0)) }
        let portCount = Int(((portIDs + exceptionPorts.map(\.tap)).max() ?? 0) + 1)
        let barrier = workerLcores.count > 1 ? StopBarrier(parties: workerLcores.count) : nil
        for (i, lc) in workerLcores.enumerated() {
            let w = WorkerContext(index: i, lcore: lc, rx: lists[i], burst: options.burst, portCount: portCount,
                                  txQueues: [UInt16](repeating: UInt16(i), count: portCount),
                                  counters: counters.counters(i))
            w.stopBarrier = barrier
            w.maxIdleSleepMicros = idleSleepCeiling
            if !options.vlans.isEmpty {
                let vl = UnsafeMutablePointer<UInt16>.allocate(capacity: Int(RTE_MAX_ETHPORTS))
                vl.initialize(repeating: TxBuffers.vlanNone, count: Int(RTE_MAX_ETHPORTS))
                for (port, id) in options.vlans where Int(port) < Int(RTE_MAX_ETHPORTS) { vl[Int(port)] = id }
                w.tx.vlanOf = vl
                w.tx.vlanEnabled = true
            }
            workers.append(w)
        }
    }

    /// Which worker polls queue q (of every port).
    public var queueToWorker: [Int] {
        (0..<options.rxq).map { q in workerIndex(forQueue: q, port: ports.first?.id ?? 0) }
    }

    func workerIndex(forQueue q: Int, port: UInt16) -> Int {
        // Validation guarantees one lcore per queue number across ports, so
        // an entry for another port tells this port's owner too.
        let entry = options.lcoreMap.first { $0.queue == UInt16(q) && $0.port == port }
            ?? options.lcoreMap.first { $0.queue == UInt16(q) }
        if let m = entry, let i = workerLcores.firstIndex(of: m.lcore) { return i }
        return q % workerLcores.count
    }

    /// testpmd's default port pairing: 0<->1, 2<->3, ...; an odd last port pairs with itself.
    public var portPairs: [UInt16: UInt16] {
        var pairs: [UInt16: UInt16] = [:]
        let ids = ports.map(\.id)
        var i = 0
        while i < ids.count {
            if i + 1 < ids.count {
                pairs[ids[i]] = ids[i + 1]
                pairs[ids[i + 1]] = ids[i]
            } else {
                pairs[ids[i]] = ids[i]
            }
            i += 2
        }
        return pairs
    }

    /// Give each worker its processor; the loop is specialised for P.
    public func install<P: BurstProcessor>(_ make: (WorkerContext) -> P) {
        for w in workers {
            var p = make(w)
            w.body = { [unowned w] in w.run(&p) }
        }
    }

    /// Launch the workers and run the main lcore until stopped; returns after
    /// every worker has returned.
    public func run() {
        sy_install_signal_handlers()
        startTSC = sy_rdtsc()
        lastStats = (startTSC, ports.map { Ports.stats($0.id) }, workers.map { $0.counters.pointee })
        if mainPolls {
            // One lcore: the main lcore is the worker, and its loop stops on the flag
            // that a helper thread raises for the idle exit and periodic counters.
            let watcher = Thread { [self] in self.mainLoop() }
            watcher.start()
            workers[0].body?()
            watcher.join()
        } else {
            for w in workers {
                let ctx = Unmanaged.passUnretained(w).toOpaque()
                let rc = sy_launch(w.lcore, { arg in
                    let w = Unmanaged<WorkerContext>.fromOpaque(arg!).takeUnretainedValue()
                    w.body?()
                    return 0
                }, ctx)
                if rc != 0 {
                    FileHandleOut.stderr("switchyard: cannot launch lcore \(w.lcore)\n")
                    sy_request_stop()
                }
            }
            mainLoop()
            for w in workers { _ = sy_wait_lcore(w.lcore) }
        }
    }

    /// Main lcore: periodic counters, the idle exit, housekeeping; about 1 ms per turn.
    private func mainLoop() {
        let hz = sy_tsc_hz()
        var lastRx: UInt64 = counters.total().rxPackets
        var lastRxChange = sy_rdtsc()
        var nextStats = options.statsPeriod.map { startTSC + UInt64($0 * Double(hz)) }
        while !sy_should_stop() {
            usleep(1000)
            housekeeping?()
            let now = sy_rdtsc()
            if let ms = options.exitOnIdleMs {
                let rx = counters.total().rxPackets
                if rx != lastRx {
                    lastRx = rx
                    lastRxChange = now
                } else if now - lastRxChange >= UInt64(ms) * hz / 1000 {
                    sy_request_stop()
                }
            }
            if let due = nextStats, now >= due {
                printCounters(final: false)
                nextStats = due + UInt64(options.statsPeriod! * Double(hz))
            }
        }
    }

    /// One line per port and per worker: `port P: rx=.. tx=.. drop=.. rx-mpps=.. tx-mpps=..`.
    /// Periodic lines give rates over the last period; the final ones over the whole run.
    public func printCounters(final: Bool) {
        let now = sy_rdtsc()
        let hz = Double(sy_tsc_hz())
        let since = final ? startTSC : lastStats.tsc
        let seconds = max(Double(now &- since) / hz, 1e-9)
        let portNow = ports.map { Ports.stats($0.id) }
        let workerNow = workers.map { $0.counters.pointee }
        var out = ""
        for (i, d) in ports.enumerated() {
            let s = portNow[i]
            let base = final || lastStats.ports.count != ports.count ? PortStats() : lastStats.ports[i]
            // Port drops: what the device lost plus what workers could not queue for tx on it.
            let rxRate = Double(s.rxPackets &- base.rxPackets) / seconds / 1e6
            let txRate = Double(s.txPackets &- base.txPackets) / seconds / 1e6
            out += "port \(d.id): rx=\(s.rxPackets) tx=\(s.txPackets) drop=\(s.portDrops) "
            out += "rx-mpps=\(format(rxRate)) tx-mpps=\(format(txRate))\n"
        }
        for (i, w) in workers.enumerated() {
            let c = workerNow[i]
            let base = final || lastStats.workers.count != workers.count ? WorkerCounters() : lastStats.workers[i]
            let mpps = Double(c.rxPackets &- base.rxPackets) / seconds / 1e6
            out += "lcore \(w.lcore): rx=\(c.rxPackets) tx=\(c.txPackets) drop=\(c.dropped &+ c.txDropped) "
            out += "malformed=\(c.malformed) conns=\(c.connsCreated) live=\(c.connsLive) refused=\(c.connsRefused) "
            out += "redirected=\(c.redirected) icmp=\(c.icmpSent) passthrough=\(c.passthrough) "
            out += "nodest=\(c.noDest) local=\(c.localAnswers) to-host=\(c.exceptionIn) from-host=\(c.exceptionOut) "
            out += "mpps=\(format(mpps))\n"
        }
        if !final { lastStats = (now, portNow, workerNow) }
        FileHandleOut.stdout(out)
    }

    func format(_ v: Double) -> String {
        let scaled = (v * 1000).rounded()
        let whole = Int(scaled) / 1000
        let frac = Int(scaled) % 1000
        let f = String(frac)
        return "\(whole)." + String(repeating: "0", count: 3 - f.count) + f
    }

    /// Stop and close every port (net_pcap flushes tx_pcap here).
    public func shutdown() {
        for e in exceptionPorts { _ = sy_port_stop_close(e.tap) }
        for d in ports { _ = sy_port_stop_close(d.id) }
        _ = sy_eal_cleanup()
    }

    public var elapsedSeconds: Double { Double(sy_rdtsc() &- startTSC) / Double(sy_tsc_hz()) }
}

/// Unbuffered-enough output helpers (stdout flushed per call, so tests and
/// pipes see lines as they happen).
public enum FileHandleOut {
    public static func stdout(_ s: String) {
        fputs(s, Glibc.stdout)
        fflush(Glibc.stdout)
    }
    public static func stderr(_ s: String) {
        fputs(s, Glibc.stderr)
    }
}

/// A minimal pthread wrapper (Foundation is not needed elsewhere).
final class Thread {
    private var tid = pthread_t()
    private let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
    func start() {
        let ctx = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { arg in
            let t = Unmanaged<Thread>.fromOpaque(arg!).takeRetainedValue()
            t.body()
            return nil
        }, ctx)
    }
    func join() { pthread_join(tid, nil) }
}
