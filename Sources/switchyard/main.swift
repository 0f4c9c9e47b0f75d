// switchyard [EAL options] -- [options]
// switchyard adm <ipvsadm arguments>   (also when invoked as `ipvsadm`)
import Dataplane
#if canImport(Glibc)
import Glibc
#endif

let argv = CommandLine.arguments
let invokedAs = argv.first.map { String($0.split(separator: "/").last ?? "") } ?? "switchyard"

if invokedAs == "ipvsadm" {
    exit(Admin.main(Array(argv.dropFirst()), program: "ipvsadm"))
}
if argv.count > 1 && argv[1] == "bench-table" {
    exit(TableBench.main(Array(argv.dropFirst(2))))
}
if argv.count > 1 && argv[1] == "adm" {
    exit(Admin.main(Array(argv.dropFirst(2)), program: "switchyard adm"))
}

// EAL options come before "--", Switchyard's after; parse ours first so a bad
// flag exits before EAL touches anything.
let split = argv.firstIndex(of: "--")
let ealArgs = split.map { Array(argv[..<$0]) } ?? argv
let appArgs = split.map { Array(argv[($0 + 1)...]) } ?? []
if ealArgs.contains("--help") || ealArgs.contains("-h") && split == nil {
    print(OptionParser.usage(program: "switchyard"), terminator: "")
    exit(0)
}
let options: Options
do {
    options = try OptionParser.parse(appArgs)
} catch {
    FileHandleOut.stderr("switchyard: \(error)\nTry 'switchyard -- --help' for more information.\n")
    exit(2)
}
if options.help {
    print(OptionParser.usage(program: "switchyard"), terminator: "")
    exit(0)
}
exit(Launcher.run(ealArgs: ealArgs, options: options))
