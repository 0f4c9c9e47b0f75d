// Wires options, the rules, the data plane and the balancer together for one run.
import Control
import Dataplane
import IPVS
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

        let runtime: Runtime
        do {
            runtime = try Runtime(ealArgs: ealArgs, options: options, reasonCount: ParseResult.count)
        } catch {
            FileHandleOut.stderr("switchyard: \(error)\n")
            return 1
        }
        let pairs = runtime.portPairs
        var engines: [Engine] = []
        switch options.forwardMode {
        case .io:
            runtime.install { _ in IOForwarder(pairs: pairs) }
        case .lb:
            var settings = EngineSettings()
            settings.mtu = options.mtu
            for w in runtime.workers {
                let e = Engine(table: table, capacity: options.maxConns, settings: settings)
                e.privateSchedulers = w.index > 0
                e.log = { FileHandleOut.stderr("IPVS: \($0)\n") }
                engines.append(e)
            }
            table.rawStats = { owner in rawStats(owner, engines) }
            let router = Router(options: options, ports: runtime.ports)
            let pool = runtime.pool!
            runtime.install { w in
                Balancer(engine: engines[w.index], router: router, pool: pool, pairs: pairs,
                         reasons: runtime.counters.reasonCounters(w.index), options: options)
            }
        }
        FileHandleOut.stdout("switchyard: ready\n")
        runtime.run()
        FileHandleOut.stdout("switchyard: stopped after \(format3(runtime.elapsedSeconds)) s; final counters:\n")
        runtime.printCounters(final: true)
        printMalformed(runtime)
        if options.dumpOnExit && options.forwardMode == .lb {
            dump(table: table, engines: engines, options: options, workers: runtime.workers.count)
        }
        runtime.shutdown()
        return 0
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
        var rows: [ConnectionRow] = []
        for e in engines {
            for c in e.connections() {
                rows.append(ConnectionRow(proto: c.proto, expiresSeconds: UInt32(clamping: c.expiresInSeconds),
                                          stateName: c.stateName, client: (c.client, c.cport),
                                          virtual: (c.vaddr, c.vport), dest: (c.daddr, c.dport)))
            }
        }
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
