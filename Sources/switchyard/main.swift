import CDPDK
import Dataplane
var args = CommandLine.arguments
let rc = args.withUnsafeMutableBufferPointer { _ in 0 }
var cargs = CommandLine.unsafeArgv
let n = sy_eal_init(CommandLine.argc, cargs)
print("eal", n, sy_lcore_count(), sy_port_count())
