// What the daemon runs besides the admin socket on the control side: the
// keepalived health monitor (`--keepalived FILE`) and the dynamic-feedback
// controller (`--feedback-port P`, `--feedback-options K=V,...`). The
// launcher makes one, applies its initial rules to the master table, starts
// it, and calls `housekeeping(table:)` from the control thread's loop: that
// only drains queues and does arithmetic, it never blocks. Table changes go
// through `execute`, the path `switchyard adm` commands take, and so reach
// the workers through their rings.
//
// Admin requests whose first argument is `--health` are answered here:
// `switchyard adm --health` prints the check state table (and feedback
// reports), `--health --json` the JSON documents (HealthMonitor.swift and
// Feedback.swift give the schemas), one per line: health, then feedback.

import IPVS
#if canImport(Glibc)
import Glibc
#endif

public final class Supervisor {
    public let monitor: HealthMonitor?
    public let feedback: FeedbackController?
    let feedbackPort: UInt16?
    public var log: (String) -> Void = { fputs("switchyard: \($0)\n", Glibc.stderr) }

    init(monitor: HealthMonitor?, feedback: FeedbackController?, feedbackPort: UInt16?) {
        self.monitor = monitor; self.feedback = feedback; self.feedbackPort = feedbackPort
    }

    /// Parse the keepalived file and feedback settings, and apply the
    /// keepalived services to `table` (all or nothing is not attempted: the
    /// first refused command is an error naming it). nil when neither
    /// feature is asked for.
    public static func make(keepalived path: String?, feedbackPort: UInt16?, feedbackOptions: String,
                            table: IPVSAdministrable) -> Result<Supervisor?, FeedbackError> {
        var monitor: HealthMonitor? = nil
        if let p = path {
            let plan: KeepalivedPlan
            do throws(KeepalivedError) {
                plan = try KeepalivedConfig.load(path: p).plan()
            } catch {
                return .failure(FeedbackError("--keepalived: \(error)"))
            }
            for n in plan.notices { fputs("switchyard: keepalived: \(n)\n", Glibc.stderr) }
            for c in plan.initialCommands {
                var o = "", e = ""
                if execute(c, on: table, environment: AdmEnvironment(names: .numericOnly), output: &o, errors: &e) != 0 {
                    return .failure(FeedbackError("--keepalived \(p): \(IpvsadmWords.line(c)): \(e.split(separator: "\n").first ?? "")"))
                }
            }
            monitor = HealthMonitor(plan: plan)
        }
        var feedback: FeedbackController? = nil
        if let port = feedbackPort {
            switch FeedbackSettings.parse(feedbackOptions) {
            case .failure(let e): return .failure(FeedbackError("--feedback-options: \(e)"))
            case .success(let s): feedback = FeedbackController(settings: s)
            }
            _ = port
        } else if !feedbackOptions.isEmpty {
            return .failure(FeedbackError("--feedback-options needs --feedback-port"))
        }
        if monitor == nil && feedback == nil { return .success(nil) }
        return .success(Supervisor(monitor: monitor, feedback: feedback, feedbackPort: feedbackPort))
    }

    /// Start the checker threads and the feedback listener.
    public func start() throws(FeedbackError) {
        if let f = feedback, let p = feedbackPort { try f.listen(port: p) }
        monitor?.start()
    }

    public func stop() {
        monitor?.stop()
        feedback?.stop()
    }

    /// Control thread, about every millisecond: apply queued health changes,
    /// then (once per feedback period) the feedback rule.
    public func housekeeping(table: IPVSAdministrable) {
        let apply: (IpvsadmCommand) -> Void = { c in
            var o = "", e = ""
            if execute(c, on: table, environment: AdmEnvironment(names: .numericOnly), output: &o, errors: &e) != 0 {
                self.log("\(IpvsadmWords.line(c)): \(e.split(separator: "\n").first ?? "refused")")
            }
        }
        monitor?.drain(apply: apply)
        feedback?.tick(table: table, apply: apply)
    }

    /// `--health [--json]`; nil for any other request.
    public func handle(_ req: AdminProtocol.Request) -> AdminProtocol.Response? {
        Supervisor.handleHealth(req, supervisor: self)
    }

    /// Also answers `--health` when nothing is monitored.
    public static func handleHealth(_ req: AdminProtocol.Request, supervisor: Supervisor?) -> AdminProtocol.Response? {
        guard req.arguments.first == "--health" else { return nil }
        let rest = req.arguments.dropFirst()
        let json = rest.contains("--json")
        if let bad = rest.first(where: { $0 != "--json" && $0 != "-n" }) {
            return AdminProtocol.Response(status: 2, output: "", errors: "--health: unexpected argument \(bad)\n")
        }
        var out = ""
        if json {
            out += supervisor?.monitor?.statusJSON() ?? "{\"services\":[]}\n"
            out += supervisor?.feedback?.statusJSON() ?? "{\"feedback\":null}\n"
        } else {
            if let m = supervisor?.monitor { out += m.statusText() } else { out += "No health checks (start switchyard with --keepalived FILE)\n" }
            if let f = supervisor?.feedback { out += f.statusText() }
        }
        return AdminProtocol.Response(status: 0, output: out, errors: "")
    }
}
