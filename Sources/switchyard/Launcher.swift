// Wires options, the data plane and the balancer together for one run.
import Dataplane
import Wire

enum Launcher {
    static func run(ealArgs: [String], options: Options) -> Int32 {
        let runtime: Runtime
        do {
            runtime = try Runtime(ealArgs: ealArgs, options: options, reasonCount: 1)
        } catch {
            FileHandleOut.stderr("switchyard: \(error)\n")
            return 1
        }
        let pairs = runtime.portPairs
        runtime.install { _ in IOForwarder(pairs: pairs) }
        FileHandleOut.stdout("switchyard: ready\n")
        runtime.run()
        FileHandleOut.stdout("switchyard: stopped after \(String(format3(runtime.elapsedSeconds))) s; final counters:\n")
        runtime.printCounters(final: true)
        runtime.shutdown()
        return 0
    }

    static func format3(_ v: Double) -> String {
        let ms = Int((v * 1000).rounded())
        let frac = String(ms % 1000)
        return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}
