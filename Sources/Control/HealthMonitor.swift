// The health monitor: checker threads run the probes (never on the control
// thread), feed the results to the HealthCore under a Mutex, and queue the
// table commands it calls for; the control thread empties that queue from
// its housekeeping with `drain(apply:)`, which takes the lock only long
// enough to swap the queue out. The packet path never sees any of this.
//
// `switchyard adm --health [--json]` shows `statusText()` / `statusJSON()`.
//
// statusJSON schema:
//   { "services": [ { "service": "TCP 10.0.0.1:80", "delay_loop": Number,
//       "sorry_server": null | { "address": String, "port": Int, "weight": Int|null },
//       "servers": [ { "address": String, "port": Int, "state": "up"|"down",
//           "weight": Int|null,            // what the monitor put in the table (null: removed)
//           "configured_weight": Int, "inhibit_on_failure": Bool,
//           "since": Number,               // seconds in this state
//           "reason": String, "transitions": Int,
//           "checkers": [ { "type": "TCP_CHECK"|..., "state": "up"|"down",
//               "rise": Int, "fall": Int, "successes": Int, "failures": Int,
//               "checks": Int, "last": null | { "ok": Bool, "reason": String, "age": Number } } ] } ] } ] }

import IPVS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public final class HealthMonitor: @unchecked Sendable {
    struct State {
        var core: HealthCore
        var queue: [IpvsadmCommand] = []
    }
    private let state: Mutex<State>
    private let clock: @Sendable () -> Double
    private let probe: @Sendable (CheckerConfig, IPAddress, UInt16) -> ProbeResult
    private let stopping = Atomic<Bool>(false)
    private var threads: [pthread_t] = []
    public let plan: KeepalivedPlan

    /// - Parameters:
    ///   - clock: monotonic seconds (tests may fake it).
    ///   - probe: runs one probe (tests may fake it); the real one by default.
    ///   - log: one line per transition (stderr by default).
    public init(plan: KeepalivedPlan,
                clock: @escaping @Sendable () -> Double = { HealthProbe.now() },
                probe: @escaping @Sendable (CheckerConfig, IPAddress, UInt16) -> ProbeResult = { HealthProbe.run($0, address: $1, port: $2) },
                log: @escaping (String) -> Void = { fputs("switchyard: \($0)\n", Glibc.stderr) }) {
        self.plan = plan
        self.clock = clock
        self.probe = probe
        state = Mutex(State(core: HealthCore(plan: plan, now: clock(), log: log)))
    }

    /// Commands to apply before the first drain: what an import applies.
    public var initialCommands: [IpvsadmCommand] { plan.initialCommands }

    /// Start one thread per checker.
    public func start() {
        let refs = state.withLock { $0.core.allCheckers }
        for ref in refs {
            let box = Unmanaged.passRetained(CheckerThread(monitor: self, ref: ref)).toOpaque()
            var tid = pthread_t()
            if pthread_create(&tid, nil, { arg in
                let t = Unmanaged<CheckerThread>.fromOpaque(arg!).takeRetainedValue()
                t.monitor.loop(t.ref)
                return nil
            }, box) == 0 {
                threads.append(tid)
            } else {
                Unmanaged<CheckerThread>.fromOpaque(box).release()
            }
        }
    }

    /// Stop and join the checker threads (each finishes its current probe).
    public func stop() {
        stopping.store(true, ordering: .releasing)
        for t in threads { pthread_join(t, nil) }
        threads.removeAll()
    }

    final class CheckerThread {
        let monitor: HealthMonitor
        let ref: CheckerRef
        init(monitor: HealthMonitor, ref: CheckerRef) { self.monitor = monitor; self.ref = ref }
    }

    func loop(_ ref: CheckerRef) {
        let (cfg, addr, port) = state.withLock { st -> (CheckerConfig, IPAddress, UInt16) in
            let s = st.core.services[ref.service].servers[ref.server]
            return (s.checkers[ref.checker].config, s.planned.dest.addr, s.planned.dest.port)
        }
        while !stopping.load(ordering: .acquiring) {
            let due = state.withLock { $0.core.nextDue(ref) }
            let wait = due - clock()
            if wait > 0 {
                usleep(useconds_t(min(wait, 0.1) * 1_000_000))
                continue
            }
            let r = probe(cfg, addr, port)
            if stopping.load(ordering: .acquiring) { break }
            let now = clock()
            state.withLock { st in
                st.queue += st.core.record(ref, r, now: now)
            }
        }
    }

    /// Run the probes that are due now on the calling thread (tests, and
    /// one-shot use without threads).
    public func runDueChecks() {
        let now = clock()
        let due = state.withLock { st in
            st.core.due(now: now).map { ref -> (CheckerRef, CheckerConfig, IPAddress, UInt16) in
                let s = st.core.services[ref.service].servers[ref.server]
                return (ref, s.checkers[ref.checker].config, s.planned.dest.addr, s.planned.dest.port)
            }
        }
        for (ref, cfg, addr, port) in due {
            let r = probe(cfg, addr, port)
            state.withLock { st in st.queue += st.core.record(ref, r, now: clock()) }
        }
    }

    /// Control thread: hand every queued command to `apply`, in order.
    public func drain(apply: (IpvsadmCommand) -> Void) {
        let cmds = state.withLock { st -> [IpvsadmCommand] in
            let q = st.queue
            st.queue.removeAll()
            return q
        }
        for c in cmds { apply(c) }
    }

    // MARK: - Status

    struct Snapshot {
        var services: [HealthCore.ServiceState]
        var now: Double
    }

    func snapshot() -> Snapshot {
        let now = clock()
        return state.withLock { Snapshot(services: $0.core.services, now: now) }
    }

    static func seconds(_ v: Double) -> String {
        let ms = Int((max(0, v) * 1000).rounded())
        let frac = String(ms % 1000)
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    }

    public func statusText() -> String {
        let snap = snapshot()
        var out = "Prot LocalAddress:Port         RemoteAddress:Port            State Weight Since     Checks\n"
        for s in snap.services {
            out += s.planned.name + "\n"
            for r in s.servers {
                let w = r.appliedWeight.map(String.init) ?? "-"
                let checks = r.checkers.map { c in
                    "\(c.config.kind.rawValue)=\(c.counter.up ? "up" : "down")(\(c.counter.successes)/\(c.config.rise) ok, \(c.counter.failures)/\(c.config.fall) fail)"
                }.joined(separator: " ")
                out += "  -> " + ljust(IpvsadmWords.hostPort(r.planned.dest.addr, r.planned.dest.port), 28) + " "
                    + ljust(r.up ? "UP" : "DOWN", 5) + " " + ljust(w, 6) + " " + ljust(HealthMonitor.seconds(snap.now - r.since) + "s", 9)
                    + " " + (checks.isEmpty ? "(no checker)" : checks) + "  " + r.reason + "\n"
            }
            if let sorry = s.planned.sorry {
                out += "  sorry " + IpvsadmWords.hostPort(sorry.addr, sorry.port)
                    + (s.sorryWeight.map { " in service, weight \($0)" } ?? " not in service") + "\n"
            }
        }
        return out
    }

    public func statusJSON() -> String {
        let snap = snapshot()
        let j = AdmJSON.string
        func obj(_ f: [(String, String)]) -> String { "{" + f.map { j($0.0) + ":" + $0.1 }.joined(separator: ",") + "}" }
        let services = snap.services.map { s -> String in
            let servers = s.servers.map { r -> String in
                let cks = r.checkers.map { c -> String in
                    let last = c.lastResult.map { lr in
                        obj([("ok", lr.ok ? "true" : "false"), ("reason", j(lr.reason)),
                             ("age", HealthMonitor.seconds(snap.now - (c.lastCheck ?? snap.now)))])
                    } ?? "null"
                    return obj([("type", j(c.config.kind.rawValue)), ("state", j(c.counter.up ? "up" : "down")),
                                ("rise", "\(c.config.rise)"), ("fall", "\(c.config.fall)"),
                                ("successes", "\(c.counter.successes)"), ("failures", "\(c.counter.failures)"),
                                ("checks", "\(c.checks)"), ("last", last)])
                }
                return obj([("address", j(inetNtop(r.planned.dest.addr))), ("port", "\(r.planned.dest.port)"),
                            ("state", j(r.up ? "up" : "down")),
                            ("weight", r.appliedWeight.map { "\($0)" } ?? "null"),
                            ("configured_weight", "\(r.planned.dest.weight)"),
                            ("inhibit_on_failure", r.planned.config.inhibitOnFailure ? "true" : "false"),
                            ("since", HealthMonitor.seconds(snap.now - r.since)), ("reason", j(r.reason)),
                            ("transitions", "\(r.transitions)"),
                            ("checkers", "[" + cks.joined(separator: ",") + "]")])
            }
            let sorry = s.planned.sorry.map { d in
                obj([("address", j(inetNtop(d.addr))), ("port", "\(d.port)"),
                     ("weight", s.sorryWeight.map { "\($0)" } ?? "null")])
            } ?? "null"
            return obj([("service", j(s.planned.name)), ("delay_loop", "\(s.planned.config.delayLoop)"),
                        ("sorry_server", sorry), ("servers", "[" + servers.joined(separator: ",") + "]")])
        }
        return obj([("services", "[" + services.joined(separator: ",") + "]")]) + "\n"
    }
}
