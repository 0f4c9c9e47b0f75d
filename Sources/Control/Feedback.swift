// Dynamic-feedback load balancing (after Wensong Zhang's LVS description):
// agents on the real servers report their load; every period the control
// thread turns each server's reports into an aggregate load and moves the
// weight of every dest with that address by
//
//     w <- w + A * cbrt(0.95 - aggregate_load)
//
// (0.95: the utilisation aimed at; a load below it raises the weight, above
// it lowers it; the cube root makes the step large far from the target and
// small near it). Then w is clamped to [min_weight, SCALE * initial_weight],
// and the table is changed only when the rounded result differs from the
// table's weight by more than `threshold` (a fraction of the current
// weight: the significance threshold), through the ipvsadm `-e` path.
// w is kept as a real number between periods, so small steps accumulate.
// Only dests with a non-zero initial weight are adjusted; a dest at weight 0
// (quiesced by a health check or an administrator) is left alone, and a
// weight changed by someone else is taken as the new current value.
// "initial weight" is the dest's weight when feedback first saw it.
//
// Agent protocol (UDP, one datagram = one line of `key=value` pairs
// separated by blanks; unknown keys are ignored):
//     addr=198.18.1.2 cpu=0.25 load1=0.40 ncpu=2 mem=0.61 conns=17
//   addr   the real server's address as the balancer knows it (optional:
//          the datagram's source address otherwise)
//   cpu    CPU busy fraction over the last interval, 0..1
//   load1  1-minute load average; ncpu its number of CPUs (default 1)
//   mem    memory in use, fraction 0..1 (1 - MemAvailable/MemTotal)
//   conns  established TCP connections
// Each metric becomes a load in [0, 4]: cpu, mem as given, load1/ncpu,
// conns/conns_capacity. aggregate = Σ c_i × load_i / Σ c_i over the metrics
// the report has. Defaults (all settable with --feedback-options k=v,...):
//   cpu=0.4 load=0.2 mem=0.3 conns=0.1 conns_capacity=1000
//   a=5 scale=10 min_weight=1 threshold=0.05 period=5 stale=15
// Reports older than `stale` seconds are ignored (the weight stays).

import IPVS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public struct FeedbackReport: Sendable, Equatable {
    public var address: IPAddress? = nil
    public var cpu: Double? = nil
    public var load1: Double? = nil
    public var ncpu: Double = 1
    public var mem: Double? = nil
    public var conns: Double? = nil
    public init() {}

    public static func parse(_ text: String) -> Result<FeedbackReport, FeedbackError> {
        var r = FeedbackReport()
        var any = false
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
            let kv = word.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { return .failure(FeedbackError("not key=value: '\(word)'")) }
            let k = String(kv[0]), v = String(kv[1])
            func num(_ lo: Double, _ hi: Double) -> Double? {
                guard let d = Double(v), d.isFinite, d >= lo, d <= hi else { return nil }
                return d
            }
            switch k {
            case "addr":
                guard let a = IPAddress(v) else { return .failure(FeedbackError("bad addr '\(v)'")) }
                r.address = a
            case "cpu":
                guard let d = num(0, 1) else { return .failure(FeedbackError("bad cpu '\(v)' (0..1)")) }
                r.cpu = d; any = true
            case "load1":
                guard let d = num(0, 1e6) else { return .failure(FeedbackError("bad load1 '\(v)'")) }
                r.load1 = d; any = true
            case "ncpu":
                guard let d = num(1, 1e6) else { return .failure(FeedbackError("bad ncpu '\(v)'")) }
                r.ncpu = d
            case "mem":
                guard let d = num(0, 1) else { return .failure(FeedbackError("bad mem '\(v)' (0..1)")) }
                r.mem = d; any = true
            case "conns":
                guard let d = num(0, 1e12) else { return .failure(FeedbackError("bad conns '\(v)'")) }
                r.conns = d; any = true
            default:
                continue
            }
        }
        if !any { return .failure(FeedbackError("no load metric (cpu, load1, mem, conns)")) }
        return .success(r)
    }
}

public struct FeedbackError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public struct FeedbackSettings: Sendable, Equatable {
    public var cpu = 0.4
    public var load = 0.2
    public var mem = 0.3
    public var conns = 0.1
    public var connsCapacity = 1000.0
    /// A: the scale of one adjustment.
    public var a = 5.0
    /// Weights stay at most scale × initial weight.
    public var scale = 10.0
    public var minWeight = 1.0
    /// Significance threshold, a fraction of the current weight.
    public var threshold = 0.05
    /// Seconds between adjustments.
    public var period = 5.0
    /// Reports older than this many seconds are ignored.
    public var stale = 15.0
    public init() {}

    /// `k=v,k=v` with the keys above (cpu, load, mem, conns, conns_capacity,
    /// a, scale, min_weight, threshold, period, stale).
    public static func parse(_ text: String) -> Result<FeedbackSettings, FeedbackError> {
        var s = FeedbackSettings()
        for item in text.split(separator: ",") where !item.isEmpty {
            let kv = item.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let v = Double(kv[1]), v.isFinite, v >= 0 else {
                return .failure(FeedbackError("invalid feedback option '\(item)' (expected key=number)"))
            }
            switch kv[0] {
            case "cpu": s.cpu = v
            case "load": s.load = v
            case "mem": s.mem = v
            case "conns": s.conns = v
            case "conns_capacity": guard v > 0 else { return .failure(FeedbackError("conns_capacity must be > 0")) }; s.connsCapacity = v
            case "a": s.a = v
            case "scale": s.scale = v
            case "min_weight": s.minWeight = v
            case "threshold": s.threshold = v
            case "period": guard v > 0 else { return .failure(FeedbackError("period must be > 0")) }; s.period = v
            case "stale": s.stale = v
            default: return .failure(FeedbackError("unknown feedback option '\(kv[0])'"))
            }
        }
        return .success(s)
    }

    /// The aggregate load of one report (nil if it has no weighted metric).
    public func aggregateLoad(_ r: FeedbackReport) -> Double? {
        var sum = 0.0, total = 0.0
        func add(_ c: Double, _ v: Double?) {
            guard let v = v, c > 0 else { return }
            sum += c * min(max(v, 0), 4)
            total += c
        }
        add(cpu, r.cpu)
        add(load, r.load1.map { $0 / max(r.ncpu, 1) })
        add(mem, r.mem)
        add(conns, r.conns.map { $0 / connsCapacity })
        return total > 0 ? sum / total : nil
    }

    /// One step of the rule: the new (real-valued) weight.
    public func step(weight: Double, initial: Int32, load: Double) -> Double {
        let w = weight + a * cbrt(0.95 - load)
        return min(max(w, minWeight), scale * Double(initial))
    }

    /// Whether a change from `current` to `target` is significant.
    public func significant(current: Int32, target: Int32) -> Bool {
        target != current && Double(abs(target - current)) > threshold * Double(current)
    }
}

public final class FeedbackController: @unchecked Sendable {
    public let settings: FeedbackSettings
    struct Latest {
        var report: FeedbackReport
        var at: Double
        var from: IPAddress
    }
    private let reports = Mutex<[IPAddress: Latest]>([:])
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t? = nil
    private var fd: Int32 = -1
    private let clock: @Sendable () -> Double
    public var log: (String) -> Void

    struct Track {
        var initial: Int32
        var value: Double
        var lastApplied: Int32
    }
    struct DestKey: Hashable {
        var service: ServiceKey
        var addr: IPAddress
        var port: UInt16
    }
    private var tracks: [DestKey: Track] = [:]
    private var lastTick: Double? = nil
    private let received = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)

    public init(settings: FeedbackSettings = FeedbackSettings(),
                clock: @escaping @Sendable () -> Double = { HealthProbe.now() },
                log: @escaping (String) -> Void = { fputs("switchyard: \($0)\n", Glibc.stderr) }) {
        self.settings = settings
        self.clock = clock
        self.log = log
    }

    /// Take one datagram (thread-safe).
    public func receive(_ text: String, from: IPAddress, at now: Double) {
        switch FeedbackReport.parse(text) {
        case .success(let r):
            let addr = r.address ?? from
            reports.withLock { $0[addr] = Latest(report: r, at: now, from: from) }
            received.add(1, ordering: .relaxed)
        case .failure(let e):
            if rejected.add(1, ordering: .relaxed).newValue <= 10 {
                log("feedback: report from \(inetNtop(from)) refused: \(e)")
            }
        }
    }

    /// Listen for agent reports on a UDP port (IPv6 socket accepting IPv4 too).
    public func listen(port: UInt16) throws(FeedbackError) {
        let s = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw FeedbackError("feedback socket: \(HealthProbe.errorText(errno))") }
        var off: Int32 = 0
        setsockopt(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, socklen_t(MemoryLayout<Int32>.size))
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in6()
        sa.sin6_family = sa_family_t(AF_INET6)
        sa.sin6_port = port.bigEndian
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(s)
            throw FeedbackError("feedback port \(port): \(HealthProbe.errorText(e))")
        }
        fd = s
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        if pthread_create(&tid, nil, { arg in
            let c = Unmanaged<FeedbackController>.fromOpaque(arg!).takeRetainedValue()
            c.receiveLoop()
            return nil
        }, box) != 0 {
            Unmanaged<FeedbackController>.fromOpaque(box).release()
            close(s)
            fd = -1
            throw FeedbackError("feedback: cannot start the listener thread")
        }
        thread = tid
    }

    func receiveLoop() {
        var buf = [UInt8](repeating: 0, count: 2048)
        while !stopping.load(ordering: .acquiring) {
            var from = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buf.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) }
                }
            }
            if n <= 0 { continue }
            guard var src = HealthProbe.address(of: from) else { continue }
            // IPv4-mapped (::ffff:a.b.c.d) senders are IPv4 agents.
            if !src.isV4 && src.hi == 0 && (src.lo >> 32) == 0xFFFF { src = IPAddress(v4: UInt32(truncatingIfNeeded: src.lo)) }
            receive(String(decoding: buf[0..<n], as: UTF8.self), from: src, at: clock())
        }
    }

    public func stop() {
        stopping.store(true, ordering: .releasing)
        if let t = thread { pthread_join(t, nil) }
        thread = nil
        if fd >= 0 { close(fd); fd = -1 }
    }

    /// Control thread, from housekeeping: once per period, adjust the
    /// weights of every dest whose address has a fresh report.
    public func tick(table: IPVSAdministrable, apply: (IpvsadmCommand) -> Void) {
        let now = clock()
        if let last = lastTick, now - last < settings.period { return }
        lastTick = now
        adjust(table: table, now: now, apply: apply)
    }

    /// One adjustment round (tests call it directly).
    public func adjust(table: IPVSAdministrable, now: Double, apply: (IpvsadmCommand) -> Void) {
        let current = reports.withLock { $0 }
        if current.isEmpty { return }
        for s in table.services {
            for d in s.dests {
                guard let rep = current[d.addr], now - rep.at <= settings.stale,
                      let load = settings.aggregateLoad(rep.report) else { continue }
                let key = DestKey(service: s.key, addr: d.addr, port: d.port)
                var t = tracks[key] ?? Track(initial: d.weight, value: Double(d.weight), lastApplied: d.weight)
                if d.weight != t.lastApplied {          // changed by someone else
                    t.value = Double(d.weight)
                    t.lastApplied = d.weight
                }
                guard t.initial > 0, d.weight > 0 else { tracks[key] = t; continue }
                let old = t.value
                t.value = settings.step(weight: old, initial: t.initial, load: load)
                let target = Int32(t.value.rounded())
                let before = d.weight
                if settings.significant(current: before, target: target) {
                    var spec = IpvsadmWords.dest(d)
                    spec.weight = target
                    let words = ["-e"] + IpvsadmWords.service(s.key) + IpvsadmWords.dest(spec)
                    if case .success(let cmd) = IpvsadmWords.command(words) {
                        apply(cmd)
                        log("feedback: \(KeepalivedPlan.serviceName(s.key)) real server \(IpvsadmWords.hostPort(d.addr, d.port)): "
                            + "load \(fmt(load)) value \(fmt(old)) -> \(fmt(t.value)) (initial \(t.initial)); weight \(before) -> \(target)")
                        t.lastApplied = target
                    }
                }
                tracks[key] = t
            }
        }
    }

    func fmt(_ v: Double) -> String {
        let neg = v < 0
        let m = Int((abs(v) * 1000).rounded())
        let f = String(m % 1000)
        return (neg ? "-" : "") + "\(m / 1000)." + String(repeating: "0", count: 3 - f.count) + f
    }

    /// The latest report per address, for `--health`.
    public func statusJSON() -> String {
        let now = clock()
        let cur = reports.withLock { $0 }
        let j = AdmJSON.string
        let items = cur.keys.sorted().map { a -> String in
            let l = cur[a]!
            func n(_ v: Double?) -> String { v.map { fmt($0) } ?? "null" }
            return "{" + [
                (j("address"), j(inetNtop(a))), (j("age"), fmt(now - l.at)),
                (j("cpu"), n(l.report.cpu)), (j("load1"), n(l.report.load1)), (j("ncpu"), fmt(l.report.ncpu)),
                (j("mem"), n(l.report.mem)), (j("conns"), n(l.report.conns)),
                (j("aggregate_load"), n(settings.aggregateLoad(l.report))),
            ].map { $0.0 + ":" + $0.1 }.joined(separator: ",") + "}"
        }
        return "{\"feedback\":{\"received\":\(received.load(ordering: .relaxed)),\"refused\":\(rejected.load(ordering: .relaxed)),\"servers\":[" + items.joined(separator: ",") + "]}}\n"
    }

    public func statusText() -> String {
        let now = clock()
        let cur = reports.withLock { $0 }
        var out = "Feedback (\(received.load(ordering: .relaxed)) reports, \(rejected.load(ordering: .relaxed)) refused)\n"
        for a in cur.keys.sorted() {
            let l = cur[a]!
            out += "  " + ljust(inetNtop(a), 20) + " load " + (settings.aggregateLoad(l.report).map { fmt($0) } ?? "-")
                + "  age " + fmt(now - l.at) + "s\n"
        }
        return out
    }
}
