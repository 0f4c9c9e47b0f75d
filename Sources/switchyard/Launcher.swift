// Wires options, the rules, the data plane and the balancer together for one run.
import CDPDK
import Control
import Dataplane
import IPVS
import Synchronization
import Wire
#if canImport(Glibc)
import Glibc
#endif

enum Launcher {
    static func run(ealArgs: [String], options: Options) -> Int32 {
        // Rules first: a bad file is refused before EAL starts anything.
        let table = IPVSTable()
        if let path = options.configFile {
            if let failure = loadConfig(path: path, into: table) {
                FileHandleOut.stderr("switchyard: \(failure.message)\n")
                return failure.code
            }
        }
        // keepalived services and health checks, dynamic feedback (Control/Supervisor.swift).
        let supervisor: Supervisor?
        switch Supervisor.make(keepalived: options.keepalivedFile, feedbackPort: options.feedbackPort,
                               feedbackOptions: options.feedbackOptions, table: table) {
        case .failure(let e):
            FileHandleOut.stderr("switchyard: \(e)\n")
            return 1
        case .success(let s): supervisor = s
        }
        let socketPath = options.socketPath ?? AdminServer.defaultPath(filePrefix: filePrefix(ealArgs))

        let runtime: Runtime
        do {
            runtime = try Runtime(ealArgs: ealArgs, options: options, reasonCount: ParseResult.count)
        } catch {
            FileHandleOut.stderr("switchyard: \(error)\n")
            return 1
        }
        let pairs = runtime.portPairs
        var engines: [Engine] = []
        // Objects the workers reference without counting (unowned): they live
        // until the run ends.
        var keepAlive: [AnyObject] = []
        defer { withExtendedLifetime(keepAlive) {} }
        switch options.forwardMode {
        case .io:
            runtime.install { _ in IOForwarder(pairs: pairs) }
        case .lb:
            var settings = EngineSettings()
            settings.mtu = options.mtu
            for _ in runtime.workers {
                // Each worker balances with its own replica of the table, built
                // by replaying the master's history and then fed its changes.
                let replica = IPVSTable()
                for c in table.history() { replica.apply(c) }
                let e = Engine(table: replica, capacity: options.maxConns, settings: settings)
                e.log = { FileHandleOut.stderr("IPVS: \($0)\n") }
                engines.append(e)
            }
            let workerEngines = engines
            table.forgetHistory()
            table.observer = { change in
                for e in workerEngines {
                    // The ring is large; if a worker lags, wait for it (the control side may wait, workers never).
                    while !e.inbox.push(.change(change)) { usleep(100) }
                }
            }
            table.rawStats = { owner in rawStats(owner, engines) }
            let router = Router(options: options, ports: runtime.ports)
            keepAlive.append(router)
            do {
                try router.buildLPM()
            } catch {
                FileHandleOut.stderr("switchyard: \(error)\n")
                runtime.shutdown()
                return 1
            }
            var options = options
            let replayOnly = runtime.ports.allSatisfy { ["net_pcap", "net_null", "net_ring"].contains($0.driver) }
            options.gratuitousARP = options.gratuitousARPSetting ?? !replayOnly
            let pool = runtime.pool!
            var steering: Steering? = nil
            if runtime.workers.count > 1 {
                do {
                    let reta = runtime.ports.map { Int(sy_port_reta_size($0.id)) }.max() ?? 0
                    steering = try Steering(workers: runtime.workers.count, queues: options.rxq,
                                            queueToWorker: runtime.queueToWorker, retaSize: reta)
                } catch {
                    FileHandleOut.stderr("switchyard: \(error)\n")
                    runtime.shutdown()
                    return 1
                }
                // Where the NIC can, let it steer: client-facing ports hash on
                // source fields, ports facing the real servers (a --port-addr
                // prefix holds one of them) on destination fields.
                let servers = table.services.flatMap { $0.dests.map(\.addr) }
                for p in runtime.ports where options.rxq > 1 {
                    let serverSide = options.portAddresses.contains { pa in
                        pa.port == p.id && servers.contains { $0.family == pa.address.family
                            && $0.masked(prefix: pa.prefixLength) == pa.address.masked(prefix: pa.prefixLength) }
                    }
                    if !steering!.programPort(p.id, destinationSide: serverSide) {
                        FileHandleOut.stderr("switchyard: port \(p.id) (\(p.driver)): RSS on source fields not available; "
                                             + "misdirected packets are handed to their owner in software\n")
                    }
                }
            }
            runtime.install { w in
                return Balancer(engine: engines[w.index], router: router, pool: pool, pairs: pairs,
                                reasons: runtime.counters.reasonCounters(w.index), options: options,
                                steering: steering, workerIndex: w.index,
                                exceptionPorts: runtime.exceptionPorts.map { ($0.data, $0.tap) })
            }
        }
        let admin = AdminServer(path: socketPath) { req in
            if let r = Supervisor.handleHealth(req, supervisor: supervisor) { return r }
            return handle(req, table: table, engines: engines, options: options, workers: runtime.workers.count)
        }
        do {
            try admin.start()
        } catch {
            FileHandleOut.stderr("switchyard: \(error)\n")
            runtime.shutdown()
            return 1
        }
        do {
            try supervisor?.start()
        } catch {
            FileHandleOut.stderr("switchyard: \(error)\n")
            admin.stop()
            runtime.shutdown()
            return 1
        }
        var lastEstimatorTick = 0.0, lastTrashPurge = 0.0
        runtime.housekeeping = {
            admin.poll()
            supervisor?.housekeeping(table: table)
            let t = runtime.elapsedSeconds
            if t - lastEstimatorTick >= 2 { lastEstimatorTick = t; table.tickEstimators() }
            if t - lastTrashPurge >= 60 { lastTrashPurge = t; table.purgeTrash(now: t) }
        }
        configureHostInterfaces(runtime, options)
        FileHandleOut.stdout("switchyard: ready\n")
        runtime.run()
        supervisor?.stop()
        admin.stop()
        FileHandleOut.stdout("switchyard: stopped after \(format3(runtime.elapsedSeconds)) s; final counters:\n")
        runtime.printCounters(final: true)
        printMalformed(runtime)
        if options.dumpOnExit && options.forwardMode == .lb {
            dump(table: table, engines: engines, options: options, workers: runtime.workers.count)
        }
        runtime.shutdown()
        return 0
    }

    /// The exception path's kernel interfaces (syP) get their port's addresses
    /// and come up, so the host's own services answer on the port addresses.
    static func configureHostInterfaces(_ runtime: Runtime, _ options: Options) {
        for e in runtime.exceptionPorts {
            var cmds = [["ip", "link", "set", "dev", e.iface, "up"]]
            for a in options.portAddresses where a.port == e.data {
                cmds.append(["ip", "addr", "replace", "\(a.address)/\(a.prefixLength)", "dev", e.iface])
            }
            for c in cmds where runCommand(c) != 0 {
                FileHandleOut.stderr("switchyard: exception path: '\(c.joined(separator: " "))' failed\n")
            }
        }
    }

    static func runCommand(_ argv: [String]) -> Int32 {
        var pid = pid_t()
        var cargs = argv.map { strdup($0) } + [nil]
        let rc = posix_spawnp(&pid, argv[0], nil, nil, &cargs, environ)
        for p in cargs { free(p) }
        guard rc == 0 else { return rc }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return status
    }

    /// EAL's --file-prefix, which names the default admin socket.
    static func filePrefix(_ eal: [String]) -> String? {
        for (i, a) in eal.enumerated() {
            if a == "--file-prefix", i + 1 < eal.count { return eal[i + 1] }
            if a.hasPrefix("--file-prefix=") { return String(a.dropFirst("--file-prefix=".count)) }
        }
        return nil
    }

    /// One admin request: the ipvsadm command runs on the control side's table;
    /// changes reach the workers through their rings.
    static func handle(_ req: AdminProtocol.Request, table: IPVSTable, engines: [Engine], options: Options,
                       workers: Int) -> AdminProtocol.Response {
        let env = AdmEnvironment(program: req.program, tableSize: options.maxConns * workers, stats: .table(table),
                                 connections: { connectionRows(engines) }, daemons: daemons,
                                 restoreInput: { req.input })
        var out = "", err = ""
        let rc = runIpvsadm(req.arguments, on: table, environment: env, output: &out, errors: &err)
        return AdminProtocol.Response(status: rc, output: out, errors: err)
    }

    nonisolated(unsafe) static let daemons = SyncDaemonRegistry()

    /// Ask every worker for its connection entries at its next burst boundary.
    static func connectionRows(_ engines: [Engine]) -> [ConnectionRow] {
        var rows: [ConnectionRow] = []
        for e in engines {
            let req = ConnectionListRequest()
            while !e.inbox.push(.listConnections(req)) { usleep(100) }
            var waited = 0
            while !req.done.load(ordering: .acquiring) && waited < 5_000 {
                usleep(200)
                waited += 1
            }
            rows += req.records.map(row)
        }
        return rows
    }

    static func row(_ c: Engine.ConnectionRecord) -> ConnectionRow {
        ConnectionRow(proto: c.proto, expiresSeconds: UInt32(clamping: c.expiresInSeconds), stateName: c.stateName,
                      client: (c.client, c.cport), virtual: (c.vaddr, c.vport), dest: (c.daddr, c.dport))
    }

    /// Apply a rules file as `ipvsadm -R` would, but all or nothing: the
    /// first line that fails (grammar or table) refuses the whole file.
    static func loadConfig(path: String, into table: IPVSTable) -> (message: String, code: Int32)? {
        guard let text = readTextFile(path) else {
            return ("cannot read --config file '\(path)'", 1)
        }
        let env = AdmEnvironment(program: "ipvsadm")
        var lineNo = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            switch parseRules(String(line), program: "ipvsadm", names: env.names) {
            case .failure(let e):
                return ("\(path): line \(lineNo): \(e.message.hasSuffix("\n") ? String(e.message.dropLast()) : e.message)", e.exitCode)
            case .success(let cmds):
                for c in cmds {
                    var out = "", err = ""
                    let rc = execute(c, on: table, environment: env, output: &out, errors: &err)
                    if rc != 0 {
                        let msg = err.split(separator: "\n").first.map(String.init) ?? "error \(rc)"
                        return ("\(path): line \(lineNo): \(msg)", rc)
                    }
                }
            }
        }
        return nil
    }

    /// Sum of every worker's raw counters for one service, dest or the total.
    static func rawStats(_ owner: StatsOwner, _ engines: [Engine]) -> StatsCounters {
        var s = StatsCounters()
        for e in engines {
            switch owner {
            case .service(let svc):
                if Int(svc.id) < e.maxIDs { s = s + e.serviceStats[Int(svc.id)] }
            case .dest(let d):
                if Int(d.id) < e.maxIDs { s = s + e.destStats[Int(d.id)] }
            case .total:
                for i in 0..<e.maxIDs { s = s + e.serviceStats[i] }
            }
        }
        return s
    }

    static func printMalformed(_ runtime: Runtime) {
        var parts: [String] = []
        for r in ParseResult.allCases where r.isMalformed {
            var n: UInt64 = 0
            for w in 0..<runtime.workers.count { n &+= runtime.counters.reasonCounters(w)[Int(r.rawValue)] }
            if n > 0 { parts.append("\(r.name)=\(n)") }
        }
        if !parts.isEmpty { FileHandleOut.stdout("malformed: " + parts.joined(separator: " ") + "\n") }
    }

    /// `--dump-on-exit`: the `ipvsadm -L -n --stats`, `-L -n` and `-L -n -c` listings.
    static func dump(table: IPVSTable, engines: [Engine], options: Options, workers: Int) {
        // The workers have stopped: their tables can be read directly. Timers
        // due at the final time (e.g. a connection expired "now" by the last
        // packet, which the kernel's timer would run right after it) run first.
        for e in engines { e.advance(to: e.now) }
        let rows = engines.flatMap { $0.connections() }.map(row)
        let env = AdmEnvironment(program: "ipvsadm", tableSize: options.maxConns * workers,
                                 stats: .table(table), connections: { rows })
        var out = ""
        for args in [["-L", "-n"], ["-L", "-n", "--stats"], ["-L", "-n", "-c"]] {
            var err = ""
            _ = runIpvsadm(args, on: table, environment: env, output: &out, errors: &err)
            out += err
        }
        FileHandleOut.stdout(out)
    }

    static func format3(_ v: Double) -> String {
        let ms = Int((v * 1000).rounded())
        let frac = String(ms % 1000)
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}
