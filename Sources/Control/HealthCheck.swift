// The health-check state machine, free of threads, sockets and clocks so it
// can be driven by tests with a fake clock and fake probe results.
//
// Per checker: rise/fall counting (`fall` consecutive failures take it down,
// `rise` consecutive successes bring it up; it starts up, as keepalived's
// checkers do, unless the virtual server says `alpha`). Scheduling: the next
// probe is due `delay_loop` after the last one, or `delay_before_retry`
// after it while a transition is pending (a failure while up, a success
// while down).
//
// Per real server: up when every checker is up (no checker: always up).
// Its place in the table follows from that:
//   up                           -> present with the configured weight, or
//                                   the MISC_CHECK dynamic weight (exit code - 2)
//   down with inhibit_on_failure -> present with weight 0 (quiesced: existing
//                                   connections drain, no new ones)
//   down without                 -> removed (-d)
// Per virtual service: its sorry_server is present (weight 1) while no real
// server is up, and removed (or, with sorry_server_inhibit, set to weight 0)
// once one is.
//
// Each change of what the table should hold becomes an ipvsadm command
// (-a, -e or -d) that the control thread applies; each transition is
// logged as one line.

import IPVS

/// The outcome of one probe.
public struct ProbeResult: Sendable, Equatable {
    public var ok: Bool
    public var reason: String
    /// MISC_CHECK with misc_dynamic: the weight the script asked for.
    public var weight: Int32? = nil
    public init(ok: Bool, reason: String, weight: Int32? = nil) { self.ok = ok; self.reason = reason; self.weight = weight }
    public static func up(_ reason: String = "ok", weight: Int32? = nil) -> ProbeResult { ProbeResult(ok: true, reason: reason, weight: weight) }
    public static func down(_ reason: String) -> ProbeResult { ProbeResult(ok: false, reason: reason) }
}

/// Rise/fall counting for one checker.
public struct RiseFall: Sendable, Equatable {
    public let rise: Int
    public let fall: Int
    public private(set) var up: Bool
    public private(set) var successes = 0
    public private(set) var failures = 0

    public init(rise: Int, fall: Int, up: Bool = true) {
        self.rise = max(1, rise); self.fall = max(1, fall); self.up = up
    }

    /// Count one result; true when the state flipped.
    public mutating func record(_ ok: Bool) -> Bool {
        if ok {
            successes += 1
            failures = 0
            if !up && successes >= rise { up = true; return true }
        } else {
            failures += 1
            successes = 0
            if up && failures >= fall { up = false; return true }
        }
        return false
    }

    /// A streak toward a flip is under way (the retry delay applies).
    public var pending: Bool { up ? failures > 0 : successes > 0 }
}

public struct CheckerRef: Sendable, Hashable {
    public var service: Int
    public var server: Int
    public var checker: Int
    public init(service: Int, server: Int, checker: Int) { self.service = service; self.server = server; self.checker = checker }
}

public final class HealthCore {
    public struct CheckerState: Sendable {
        public var config: CheckerConfig
        public var counter: RiseFall
        public var lastResult: ProbeResult? = nil
        public var lastCheck: Double? = nil
        public var checks = 0
        public var nextDue: Double
    }

    public struct ServerState: Sendable {
        public var planned: PlannedServer
        public var checkers: [CheckerState]
        public var up: Bool
        public var dynamicWeight: Int32? = nil
        /// What this monitor last put in the table (nil: absent).
        public var appliedWeight: Int32?
        public var since: Double
        public var reason: String
        public var transitions = 0
        /// The weight the table should hold now (nil: absent).
        public var desiredWeight: Int32? {
            if up { return dynamicWeight ?? planned.dest.weight }
            return planned.config.inhibitOnFailure ? 0 : nil
        }
    }

    public struct ServiceState: Sendable {
        public var planned: PlannedService
        public var servers: [ServerState]
        /// The sorry server's weight in the table (nil: absent).
        public var sorryWeight: Int32?
        public var anyUp: Bool { servers.contains { $0.up } }
    }

    public private(set) var services: [ServiceState] = []
    public var log: (String) -> Void

    /// The state right after `plan.initialCommands` were applied.
    public init(plan: KeepalivedPlan, now: Double, log: @escaping (String) -> Void = { _ in }) {
        self.log = log
        for s in plan.services {
            var servers: [ServerState] = []
            for (ri, r) in s.servers.enumerated() {
                let startsUp = !s.config.alpha || r.config.checkers.isEmpty
                // Spread the first probes a little so many servers do not fire at once.
                let stagger = Double(ri % 20) * 0.01
                let cks = r.config.checkers.map {
                    CheckerState(config: $0, counter: RiseFall(rise: $0.rise, fall: $0.fall, up: startsUp),
                                 nextDue: now + stagger)
                }
                var st = ServerState(planned: r, checkers: cks, up: startsUp, appliedWeight: nil, since: now,
                                     reason: startsUp ? "initial state" : "alpha: down until checked")
                st.appliedWeight = st.desiredWeight
                servers.append(st)
            }
            var ss = ServiceState(planned: s, servers: servers, sorryWeight: nil)
            if s.sorry != nil {
                ss.sorryWeight = ss.anyUp ? (s.sorryInhibit ? 0 : nil) : 1
            }
            services.append(ss)
        }
    }

    public var allCheckers: [CheckerRef] {
        var out: [CheckerRef] = []
        for (si, s) in services.enumerated() {
            for (ri, r) in s.servers.enumerated() {
                for ci in r.checkers.indices { out.append(CheckerRef(service: si, server: ri, checker: ci)) }
            }
        }
        return out
    }

    public func nextDue(_ ref: CheckerRef) -> Double {
        services[ref.service].servers[ref.server].checkers[ref.checker].nextDue
    }

    /// Checkers whose probe is due at `now`.
    public func due(now: Double) -> [CheckerRef] {
        allCheckers.filter { nextDue($0) <= now }
    }

    public func checker(_ ref: CheckerRef) -> CheckerState {
        services[ref.service].servers[ref.server].checkers[ref.checker]
    }

    /// Record one probe result; returns the table commands it calls for.
    @discardableResult
    public func record(_ ref: CheckerRef, _ result: ProbeResult, now: Double) -> [IpvsadmCommand] {
        var ck = services[ref.service].servers[ref.server].checkers[ref.checker]
        ck.checks += 1
        ck.lastCheck = now
        ck.lastResult = result
        _ = ck.counter.record(result.ok)
        ck.nextDue = now + (ck.counter.pending ? ck.config.delayBeforeRetry : ck.config.delayLoop)
        services[ref.service].servers[ref.server].checkers[ref.checker] = ck

        var server = services[ref.service].servers[ref.server]
        if ck.config.kind == .misc && ck.config.miscDynamic && result.ok, let w = result.weight {
            server.dynamicWeight = w
        }
        let nowUp = server.checkers.allSatisfy { $0.counter.up }
        let svcName = services[ref.service].planned.name
        let rsName = IpvsadmWords.hostPort(server.planned.dest.addr, server.planned.dest.port)
        if nowUp != server.up {
            let reasonText: String
            if nowUp {
                reasonText = "\(ck.config.kind.rawValue): \(result.reason)"
            } else {
                let failing = server.checkers.first { !$0.counter.up }
                let c = failing ?? ck
                reasonText = "\(c.config.kind.rawValue): \(c.lastResult?.reason ?? result.reason) (\(c.counter.failures) consecutive failures)"
            }
            server.up = nowUp
            server.since = now
            server.reason = reasonText
            server.transitions += 1
        }
        let oldWeight = server.appliedWeight
        let newWeight = server.desiredWeight
        var cmds: [IpvsadmCommand] = []
        let key = services[ref.service].planned.add.service!.key
        if oldWeight != newWeight {
            var d = server.planned.dest
            let action: String
            switch (oldWeight, newWeight) {
            case (nil, .some(let w)):
                d.weight = w
                cmds.append(KeepalivedPlan.destCommand(.addServer, key, d))
                action = "added with weight \(w)"
            case (.some, nil):
                cmds.append(KeepalivedPlan.destCommand(.deleteServer, key, d))
                action = "removed"
            case (.some(let o), .some(let w)):
                d.weight = w
                cmds.append(KeepalivedPlan.destCommand(.editServer, key, d))
                action = w == 0 ? "quiesced (weight \(o) -> 0)" : "weight \(o) -> \(w)"
            case (nil, nil):
                action = ""
            }
            server.appliedWeight = newWeight
            let state = server.up ? "UP" : "DOWN"
            let was = services[ref.service].servers[ref.server].up ? "UP" : "DOWN"
            log("health: \(svcName) real server \(rsName): \(was) -> \(state) (\(server.reason)); \(action)")
        } else if services[ref.service].servers[ref.server].up != server.up {
            log("health: \(svcName) real server \(rsName): \(server.up ? "DOWN -> UP" : "UP -> DOWN") (\(server.reason)); table unchanged")
        }
        services[ref.service].servers[ref.server] = server
        cmds += sorryCommands(ref.service)
        return cmds
    }

    /// Add or remove the sorry server after a change of the service's servers.
    func sorryCommands(_ si: Int) -> [IpvsadmCommand] {
        let s = services[si]
        guard let sorry = s.planned.sorry else { return [] }
        let want: Int32? = s.anyUp ? (s.planned.sorryInhibit ? 0 : nil) : 1
        guard want != s.sorryWeight else { return [] }
        let key = s.planned.add.service!.key
        var d = sorry
        var cmds: [IpvsadmCommand] = []
        switch (s.sorryWeight, want) {
        case (nil, .some(let w)):
            d.weight = w
            cmds.append(KeepalivedPlan.destCommand(.addServer, key, d))
        case (.some, nil):
            cmds.append(KeepalivedPlan.destCommand(.deleteServer, key, d))
        case (.some, .some(let w)):
            d.weight = w
            cmds.append(KeepalivedPlan.destCommand(.editServer, key, d))
        case (nil, nil):
            break
        }
        let name = IpvsadmWords.hostPort(sorry.addr, sorry.port)
        log("health: \(s.planned.name) sorry server \(name): " + (s.anyUp
            ? "a real server is up: sorry server \(want == nil ? "removed" : "set to weight 0")"
            : "no real server is up: sorry server in service (weight 1)"))
        services[si].sorryWeight = want
        return cmds
    }
}
